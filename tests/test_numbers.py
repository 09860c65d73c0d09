"""numbers.parse against real phonenumbers metadata (docs/rules.md "Numbers", R-00, R-01, R-02)."""

from __future__ import annotations

import random
import time

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinelle.core import numbers
from sentinelle.core.numbers import Kind, Number, NumberError, Territory, parse, parse_caller_id

T = Territory

# --- overseas prefixes (docs/rules.md "Numbers", R-41 overseas mobiles) -----------

OVERSEAS = [
    # national, e164, territory, kind
    ("0262123456", "+262262123456", T.RE, Kind.FIXED),
    ("0263101234", "+262263101234", T.RE, Kind.FIXED),
    ("0692123456", "+262692123456", T.RE, Kind.MOBILE),
    ("0693123456", "+262693123456", T.RE, Kind.MOBILE),
    ("0269601234", "+262269601234", T.YT, Kind.FIXED),
    ("0639123456", "+262639123456", T.YT, Kind.MOBILE),
    ("0590412345", "+590590412345", T.GP, Kind.FIXED),
    ("0590071234", "+590590071234", T.MF, Kind.FIXED),  # phonenumbers: Saint-Martin block
    ("0590271234", "+590590271234", T.BL, Kind.FIXED),  # phonenumbers: Saint-Barthélemy block
    ("0690123456", "+590690123456", T.GP, Kind.MOBILE),
    ("0691301234", "+590691301234", T.GP, Kind.MOBILE),
    ("0594101234", "+594594101234", T.GF, Kind.FIXED),
    ("0694123456", "+594694123456", T.GF, Kind.MOBILE),
    ("0596601234", "+596596601234", T.MQ, Kind.FIXED),
    ("0696123456", "+596696123456", T.MQ, Kind.MOBILE),
    ("0697123456", "+596697123456", T.MQ, Kind.MOBILE),
    ("0508412345", "+508412345", T.PM, Kind.FIXED),
    ("0508551234", "+508551234", T.PM, Kind.MOBILE),
    ("0709012345", "+590709012345", T.GP, Kind.MOBILE),  # newer overseas mobile blocks
    ("0709312345", "+594709312345", T.GF, Kind.MOBILE),
    ("0709351234", "+262709351234", T.YT, Kind.MOBILE),
]


@pytest.mark.parametrize(("national", "e164", "territory", "kind"), OVERSEAS)
def test_overseas_national_form_maps_to_territory(national, e164, territory, kind):
    n = parse(national)
    assert (n.e164, n.territory, n.kind, n.national) == (e164, territory, kind, national)
    assert n.is_french


# +590 is shared by Guadeloupe, Saint-Martin and Saint-Barthélemy (RULES.md "Numbers"):
# `territories` lists every island a number may serve, per libphonenumber's
# fixed-line ranges for regions GP, MF and BL; mobiles are listed for all three.
ISLANDS_590 = [
    ("0590871234", {T.MF, T.BL}),  # listed for Saint-Martin AND Saint-Barthélemy
    ("0590271234", {T.MF, T.BL}),
    ("0590521234", {T.MF, T.BL}),
    ("0590071234", {T.MF}),
    ("0590431234", {T.MF}),
    ("0590412345", {T.GP}),
    ("0590281234", {T.GP, T.BL}),
    ("0590351234", {T.GP, T.MF, T.BL}),
    ("0590731234", {T.GP, T.MF, T.BL}),  # listed for no island: it may be any of them
    ("0690123456", {T.GP, T.MF, T.BL}),
    ("0691301234", {T.GP, T.MF, T.BL}),
    ("0691201234", {T.GP, T.MF, T.BL}),  # a 0691 block libphonenumber does not list
    ("0709012345", {T.GP, T.MF, T.BL}),
]


@pytest.mark.parametrize(("national", "islands"), ISLANDS_590)
def test_590_numbers_list_every_island_they_may_serve(national, islands):
    for form in (national, "+590" + national[1:], "+33" + national[1:], "00590 " + national[1:]):
        n = parse(form)
        assert n.territories == frozenset(islands), form
        assert n.territory in n.territories  # the single territory stays one of them


@pytest.mark.parametrize(("national", "e164", "territory", "kind"),
                         [o for o in OVERSEAS if not o[1].startswith("+590")])
def test_other_numbers_serve_their_one_territory(national, e164, territory, kind):
    assert parse(national).territories == frozenset({territory})
    assert parse("0145678901").territories == frozenset({T.FR})
    assert parse("+4930123456").territories == frozenset()  # foreign: no French territory


@pytest.mark.parametrize(("national", "e164", "territory", "kind"), OVERSEAS)
def test_overseas_international_forms_agree(national, e164, territory, kind):
    spaced = f"{e164[:4]} {e164[4:]}"
    for raw in (e164, "00" + e164[1:], spaced, "+33" + national[1:]):
        n = parse(raw)
        assert (n.e164, n.territory, n.kind, n.national) == (e164, territory, kind, national), raw


def test_phonenumbers_alone_gets_overseas_wrong():
    """Why the prefix table exists: phonenumbers reads these as metropolitan +33."""
    for national in ("0596601234", "0269601234", "0508412345"):
        pn = phonenumbers.parse(national, "FR")
        assert phonenumbers.is_valid_number(pn)
        assert phonenumbers.region_code_for_number(pn) == "FR"
        assert parse(national).territory is not T.FR
    assert not phonenumbers.is_valid_number(phonenumbers.parse("0692123456", "FR"))


def test_overseas_prefix_under_the_wrong_country_code_is_refused():
    with pytest.raises(NumberError, match="belongs to \\+596"):
        parse("+262 596 60 12 34")


def test_pm_numbers_longer_than_the_french_plan_are_refused():
    with pytest.raises(NumberError):
        parse("+508 708 45 12 34")


# --- metropolitan --------------------------------------------------------------


@pytest.mark.parametrize(
    ("national", "kind"),
    [
        ("0123456789", Kind.FIXED),
        ("0240123456", Kind.FIXED),
        ("0388123456", Kind.FIXED),
        ("0491123456", Kind.FIXED),
        ("0556123456", Kind.FIXED),
        ("0612345678", Kind.MOBILE),
        ("0755555555", Kind.MOBILE),
        ("0800123456", Kind.NON_GEOGRAPHIC),
        ("0912345678", Kind.NON_GEOGRAPHIC),
        ("0162123456", Kind.FIXED),  # NPV range, R-42
        ("0948123456", Kind.NON_GEOGRAPHIC),  # NPV range, R-42
        ("0937123456", Kind.NON_GEOGRAPHIC),  # technical range, R-43
    ],
)
def test_metropolitan_kinds(national, kind):
    n = parse(national)
    assert n == Number(national, "+33" + national[1:], kind, T.FR, national)


SHAPES = [
    "0612345678",
    "06 12 34 56 78",
    "06.12.34.56.78",
    "06-12-34-56-78",
    "(06) 12 34 56 78",
    "  0612345678\t",
    "+33612345678",
    "+33 6 12 34 56 78",
    "+33 (0)6 12 34 56 78",
    "+33(0)612345678",
    "+33 0612345678",
    "0033612345678",
    "00 33 6 12 34 56 78",
    "0033 (0)6 12 34 56 78",
    "06\u00a012\u00a034\u00a056\u00a078",  # non-breaking spaces from a CRM export
]


@pytest.mark.parametrize("raw", SHAPES)
def test_every_shape_normalises_to_the_same_number(raw):
    n = parse(raw)
    assert (n.e164, n.national, n.kind, n.territory, n.raw) == (
        "+33612345678",
        "0612345678",
        Kind.MOBILE,
        T.FR,
        raw,
    )


def test_unallocated_metropolitan_range_is_refused():
    with pytest.raises(NumberError, match="'0700000000'"):
        parse("0700000000")


def test_bare_33_is_ambiguous_and_refused():
    with pytest.raises(NumberError, match="ambiguous"):
        parse("33612345678")


# --- outside-line prefix ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "prefix", "e164"),
    [
        ("00612345678", "0", "+33612345678"),  # outside 0 + national, not +61
        ("0 06 12 34 56 78", "0", "+33612345678"),
        ("00033612345678", "0", "+33612345678"),  # outside 0 + 00 international
        ("0033612345678", "0", "+33612345678"),  # already international: nothing stripped
        ("0612345678", "0", "+33612345678"),  # "612345678" is not a number: not stripped
        ("90612345678", "9", "+33612345678"),
        ("9 0033 6 12 34 56 78", "9", "+33612345678"),
        ("9+33612345678", "9", "+33612345678"),
        ("0612345678", "9", "+33612345678"),  # prefix absent: fine
        ("9 0044 20 7946 0958", "9", "+442079460958"),
        ("0692123456", "0", "+262692123456"),
        ("00692123456", "0", "+262692123456"),
    ],
)
def test_outside_prefix(raw, prefix, e164):
    assert parse(raw, outside_prefix=prefix).e164 == e164


def test_without_outside_prefix_00_is_international():
    # The collision the outside prefix resolves: read bare, 00 6... is +61 (and invalid).
    with pytest.raises(NumberError):
        parse("00612345678")


# --- R-00 short numbers ------------------------------------------------------------

SHORT = ["15", "17", "18", "112", "114", "115", "116000", "116111", "116999", "119", "191",
         "196", "197", "3000", "3949", "3999", "1000", "1012", "1099"]  # fmt: skip


@pytest.mark.parametrize("raw", SHORT)
def test_short_numbers_pass_through(raw):
    assert parse(raw) == Number(raw, raw, Kind.SHORT, T.FR, "")


@pytest.mark.parametrize(("raw", "prefix", "digits"), [("0112", "0", "112"), ("915", "9", "15")])
def test_short_numbers_behind_outside_prefix(raw, prefix, digits):
    n = parse(raw, outside_prefix=prefix)
    assert (n.kind, n.e164) == (Kind.SHORT, digits)


@pytest.mark.parametrize(
    "raw", ["1234", "16", "11", "113", "116", "1160000", "11600", "300", "30000", "1100", "999"]
)
def test_not_short_numbers(raw):
    with pytest.raises(NumberError):
        parse(raw)


def test_caller_id_has_no_short_numbers_and_no_prefix():
    with pytest.raises(NumberError):
        parse_caller_id("112")
    assert parse_caller_id("+33 1 62 12 34 56").national == "0162123456"
    assert parse_caller_id("0947512345").kind is Kind.NON_GEOGRAPHIC


# --- R-02 foreign -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("0032 2 511 11 11", "+3225111111"),
        ("+32 470 12 34 56", "+32470123456"),
        ("0041 44 668 18 00", "+41446681800"),
        ("+39 06 698 12345", "+390669812345"),  # Italian leading zero kept
        ("+1 212 555 0123", "+12125550123"),
    ],
)
def test_foreign(raw, e164):
    assert parse(raw) == Number(raw, e164, Kind.FOREIGN, None, "")
    assert not parse(raw).is_french


def test_invalid_foreign_is_refused():
    with pytest.raises(NumberError, match="not a valid \\+44"):
        parse("+44 1234 5")


# --- R-01 fail closed ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "06ABC",
        "06 12 34 56 7",
        "06123456789",
        "+",
        "++33612345678",
        "+33 6 12 34 56 78 9",
        "06+12345678",
        "0\u0666\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
        "\uff10\uff16\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",  # fullwidth 0612345678
        "tel:0612345678",
        "0612345678;ext=2",
    ],
)
def test_unparsable_is_an_error_with_the_raw_input(raw):
    with pytest.raises(NumberError) as err:
        parse(raw)
    assert repr(raw) in str(err.value)
    assert err.value.raw == raw


def test_very_long_input_is_rejected_quickly():
    raw = "0" * 10_000
    t0 = time.perf_counter()
    with pytest.raises(NumberError, match="longer than 64"):
        parse(raw)
    assert time.perf_counter() - t0 < 0.01


def test_parse_is_fast_enough_for_the_hot_path():
    """Budget 50 µs a call; distinct numbers so the cache cannot help."""
    raws = [f"06{i:08d}" for i in range(20_000, 22_000)]
    t0 = time.perf_counter()
    for raw in raws:
        parse(raw)
    per_call = (time.perf_counter() - t0) / len(raws)
    assert per_call < 50e-6 * 4  # 4x slack for slow CI machines


# --- properties ---------------------------------------------------------------------

OVERSEAS_PREFIXES = (
    "0262",
    "0263",
    "0692",
    "0693",
    "0269",
    "0639",
    "0590",
    "0690",
    "0691",
    "0594",
    "0694",
    "0596",
    "0696",
    "0697",
    "0508",
    "07090",
    "07091",
    "07092",
    "070930",
    "070931",
    "070932",
    "070933",
    "070935",
    "070936",
    "070937",
)
nsn9 = st.from_regex(r"[1-9][0-9]{8}", fullmatch=True)


def _outcome(raw: str) -> tuple[str, Kind, Territory | None, str] | str:
    try:
        n = parse(raw)
    except NumberError:
        return "error"
    return (n.e164, n.kind, n.territory, n.national)


@given(nsn9)
@settings(max_examples=400)
def test_national_and_plus33_forms_agree(nsn):
    assert _outcome("0" + nsn) == _outcome("+33" + nsn) == _outcome("0033" + nsn)


@given(st.sampled_from(["1", "2", "3", "4", "5", "6", "7", "9"]), st.integers(0, 10**8 - 1))
def test_valid_metropolitan_numbers_parse(first, rest):
    national = f"0{first}{rest:08d}"
    pn = phonenumbers.parse(national, "FR")
    n = _outcome(national)
    if national.startswith("0508"):
        # Saint-Pierre-et-Miquelon: only numbers phonenumbers knows as +508
        # are accepted (fail closed otherwise), never as metropolitan ones.
        assert n == "error" or n[2] is T.PM
    elif national.startswith(OVERSEAS_PREFIXES):
        assert n != "error" and n[2] is not T.FR  # overseas, whatever phonenumbers says
    elif phonenumbers.is_valid_number(pn):
        assert n != "error" and n[2] is T.FR and n[0] == "+33" + national[1:]
    else:
        assert n == "error"


@given(
    nsn9.map(lambda s: "0" + s),
    st.lists(st.sampled_from([" ", ".", "-", "  ", " - "]), min_size=10, max_size=10),
    st.sampled_from(["", " ", "\t"]),
)
def test_formatting_never_changes_the_result(national, seps, pad):
    formatted = pad + "".join(d + s for d, s in zip(national, seps, strict=True)) + pad
    assert _outcome(formatted) == _outcome(national)


@given(st.text(max_size=80))
def test_arbitrary_text_never_crashes(raw):
    try:
        n = parse(raw)
    except NumberError as exc:
        assert len(raw) > 64 or repr(raw) in str(exc)
    else:
        assert n.kind is Kind.SHORT or n.e164.startswith("+")
        assert (n.territory is None) == (n.kind is Kind.FOREIGN)


# -- validity shared by leading digits (the scrub's parsing of lead lists) ---------

@pytest.mark.parametrize(("pattern", "digits"), [
    (r"[1-9]\d{8}", 1),
    (r"(?:26[013-9]|59[1-35-9])\d{6}|(?:[13]\d|2[0-57-9]|4[1-9]|5[0-8])\d{7}", 3),
    (r"836(?:0[0-36-9]|[1-9]\d)\d{4}|8(?:1[2-9]|2[2-47-9])\d{6}", 5),
    (r"6\d{2}(?:1|23)\d{5}", 5),  # an upper bound is enough
    (r"9\d{8}", 1),
    (r"8\d{3,8}", None),  # variable width: no prefix decides
    (r"(?=6)\d{9}", None),  # a lookahead reads past the prefix
    (r"(\d)\1\d{7}", None),  # so does a back-reference
])
def test_decisive_digits_are_read_from_the_pattern(pattern, digits):
    assert numbers._decisive_digits(pattern) == digits


def test_french_metadata_is_decided_by_a_few_leading_digits():
    """Otherwise every lead pays for phonenumbers again (scrub throughput)."""
    depth = numbers._metropolitan_depth()
    assert depth is not None and depth <= 5


def test_shared_validity_is_phonenumbers_validity_for_every_prefix():
    """For every 5-digit start of a +33 number (in order, so a prefix judged
    too short would carry one answer over to its neighbours), a number
    answered after another with the same start agrees with phonenumbers."""
    rng = random.Random(14)
    numbers._VALID_FR.clear()
    wrong = []
    for head in range(10_000, 100_000):
        first, second = (f"{head}{rng.randrange(10_000):04d}" for _ in "ab")
        numbers._valid_metropolitan(first)  # fills the shared answer
        truth = phonenumbers.is_valid_number(phonenumbers.PhoneNumber(
            country_code=33, national_number=int(second)))
        if numbers._valid_metropolitan(second) != truth:
            wrong.append(second)
    assert not wrong, wrong[:5]


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"0[1-9][0-9]{8}", fullmatch=True))
def test_parse_agrees_with_phonenumbers_on_metropolitan_validity(national):
    truth = phonenumbers.is_valid_number(phonenumbers.PhoneNumber(
        country_code=33, national_number=int(national[1:])))
    if national.startswith(tuple(numbers._OVERSEAS)):
        return  # overseas: their own path
    try:
        parse(national)
    except NumberError:
        assert not truth
    else:
        assert truth
