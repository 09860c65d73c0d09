"""Turn whatever a PBX user or CRM dialled into one canonical French-plan number.

Every later decision hangs on this: the callee's territory picks the time zone
(R-20) and holiday calendar (R-21), the kind tells the caller-ID rules what a
number is (R-41, R-42, R-43), and anything we cannot read is blocked (R-01).
Hence the module fails closed: a shape it does not understand is a
``NumberError``, never a guess.

Choices worth knowing (see docs/rules.md, "Numbers"):

* Overseas numbers dialled in 10-digit national form (0262..., 0596...) are
  remapped to their own country code before phonenumbers sees them;
  phonenumbers would read them as +33 and, for 0269/0508/0596, even call them
  valid metropolitan numbers, which gives the wrong time zone and holidays.
  The same remapping applies to ``+33``/``0033`` forms (+33 596... is what the
  French network routes to Martinique), so national and +33 forms always agree.
* Eleven digits starting ``33`` without ``+``/``00`` (``33612345678``) are
  rejected: a bare country code is not dialable and guessing could ring the
  wrong person (R-01).
* Only ASCII digits count. Arabic-Indic or fullwidth digits never come out of
  a PBX dial string; accepting them would widen the attack surface for nothing.
* 08 and 09 numbers are ``NON_GEOGRAPHIC`` with territory FR: 09 is VoIP that
  can be answered anywhere, so metropolitan time is the documented default.
* +590 is shared by Guadeloupe, Saint-Martin and Saint-Barthélemy, whose
  public holidays differ (abolition of slavery: 27 May, 28 May, 9 October).
  ``Number.territories`` lists every island a number may serve, and R-21
  blocks the days of all of them (the cautious reading, as for an unknown
  Alsace-Moselle department). Data source: libphonenumber's metadata (the
  ``phonenumbers`` package), whose fixed-line ranges for regions GP, MF and
  BL say which island(s) a 0590 block serves (0590 07: MF only; 0590 27, 29,
  51, 52, 87: MF or BL; 0590 33-37: any of the three). Mobiles (0690, 0691,
  07090) are listed for all three, and a range listed for none may be any.
  ``territory`` stays one of them (libphonenumber's first match, GP for
  mobiles) for what needs a single value; all three share UTC-4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache, lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phonenumbers import PhoneNumber

try:  # the regex parser of the standard library, to read the metadata's patterns
    import re._constants as _C  # type: ignore[import-not-found]
    import re._parser as _sre  # type: ignore[import-not-found]
except ImportError:  # another Python: every number is checked in full
    _sre = None

__all__ = ["Kind", "Number", "NumberError", "Territory", "national_digits", "parse", "parse_caller_id"]

MAX_RAW_LENGTH = 64  # longer input is rejected before any real work (cheap DoS guard)


class Territory(StrEnum):
    """Where a French-plan callee lives; decides time zone and holidays (R-20, R-21)."""

    FR = "FR"  # metropolitan France, Corsica included
    RE = "RE"  # La Réunion
    YT = "YT"  # Mayotte
    GP = "GP"  # Guadeloupe
    MF = "MF"  # Saint-Martin
    BL = "BL"  # Saint-Barthélemy
    MQ = "MQ"  # Martinique
    GF = "GF"  # Guyane
    PM = "PM"  # Saint-Pierre-et-Miquelon


class Kind(StrEnum):
    SHORT = "short"  # emergency and short numbers, passed through
    MOBILE = "mobile"  # never a caller ID
    FIXED = "fixed"
    NON_GEOGRAPHIC = "non-geographic"  # 08 / 09
    FOREIGN = "foreign"  # outside this law


class NumberError(ValueError):
    """A number we refuse to interpret; callers block on it (R-01 fail closed)."""

    def __init__(self, raw: str, why: str) -> None:
        self.raw = raw
        self.why = why
        super().__init__(f"unparsable number {raw!r}: {why}")


@dataclass(frozen=True, slots=True)
class Number:
    raw: str
    e164: str  # for SHORT: the digits as dialled, e.g. "112"
    kind: Kind
    territory: Territory | None  # None only for FOREIGN
    national: str  # French 10-digit form ("0692..." for overseas); "" for FOREIGN/SHORT
    # Every territory the number may serve (R-21 blocks the days of each):
    # several only for +590; left empty, it is `territory` alone.
    territories: frozenset[Territory] = frozenset()

    def __post_init__(self) -> None:
        if not self.territories and self.territory is not None:
            object.__setattr__(self, "territories", frozenset({self.territory}))

    @property
    def is_french(self) -> bool:
        return self.territory is not None


# exactly these forms; anything else short ("1234") falls through to an error.
_SHORT = re.compile(r"(?:15|17|18|112|114|115|116[0-9]{3}|119|191|196|197|3[0-9]{3}|10[0-9]{2})")
# Formatting characters people and CRMs put in numbers; stripped, never interpreted.
_SEPARATORS = re.compile(r"[\s.\-/()]")
# "+33 (0)6 ..." - the "(0)" is the trunk prefix shown for domestic callers.
_TRUNK_MARK = re.compile(r"^(\+|00)([0-9]{1,3})[\s.\-]*\(0\)")
_NATIONAL = re.compile(r"0[1-9][0-9]{8}")
_INTERNATIONAL = re.compile(r"(?:\+|00)[1-9][0-9]{5,16}")

# National prefix -> (country code, territory, kind; None = ask phonenumbers).
# docs/rules.md "Numbers" plus R-41's overseas mobiles; 0508 + 6 digits is how
# Saint-Pierre-et-Miquelon is dialled from France; 0709x are the newer overseas
# mobile blocks (Arcep), listed so they get the right time zone instead of failing.
_OVERSEAS: dict[str, tuple[int, Territory, Kind | None]] = {
    "0262": (262, Territory.RE, Kind.FIXED),
    "0263": (262, Territory.RE, Kind.FIXED),
    "0692": (262, Territory.RE, Kind.MOBILE),
    "0693": (262, Territory.RE, Kind.MOBILE),
    "0269": (262, Territory.YT, Kind.FIXED),
    "0639": (262, Territory.YT, Kind.MOBILE),
    "0590": (590, Territory.GP, Kind.FIXED),
    "0690": (590, Territory.GP, Kind.MOBILE),
    "0691": (590, Territory.GP, Kind.MOBILE),
    "0594": (594, Territory.GF, Kind.FIXED),
    "0694": (594, Territory.GF, Kind.MOBILE),
    "0596": (596, Territory.MQ, Kind.FIXED),
    "0696": (596, Territory.MQ, Kind.MOBILE),
    "0697": (596, Territory.MQ, Kind.MOBILE),
    "0508": (508, Territory.PM, None),
    "07090": (590, Territory.GP, Kind.MOBILE),
    "07091": (596, Territory.MQ, Kind.MOBILE),
    "07092": (262, Territory.RE, Kind.MOBILE),
    "070930": (594, Territory.GF, Kind.MOBILE),
    "070931": (594, Territory.GF, Kind.MOBILE),
    "070932": (594, Territory.GF, Kind.MOBILE),
    "070933": (594, Territory.GF, Kind.MOBILE),
    "070935": (262, Territory.YT, Kind.MOBILE),
    "070936": (262, Territory.YT, Kind.MOBILE),
    "070937": (262, Territory.YT, Kind.MOBILE),
}
_PREFIX_LENGTHS = sorted({len(p) for p in _OVERSEAS}, reverse=True)
_FRENCH_CODES = frozenset({33} | {cc for cc, _, _ in _OVERSEAS.values()})
# +590 is shared (see the module docstring); phonenumbers' regions for it.
_SHARED_590 = {"GP": Territory.GP, "MF": Territory.MF, "BL": Territory.BL}


@cache
def _pn() -> ModuleType:
    """phonenumbers, imported on first use: ~20 ms of a per-call process's
    start-up, which a metropolitan number read off a preloaded table
    (`preload_fr_validity`) never needs."""
    import phonenumbers

    return phonenumbers


def _kind_of_type(number_type: int) -> Kind:
    types = _pn().PhoneNumberType
    if number_type == types.FIXED_LINE:
        return Kind.FIXED
    # Cautious for R-41: if it might be a mobile, a caller ID must not use it.
    if number_type in (types.MOBILE, types.FIXED_LINE_OR_MOBILE):
        return Kind.MOBILE
    return Kind.NON_GEOGRAPHIC


def parse(raw: str, outside_prefix: str = "") -> Number:
    """Parse a dialled number; short/emergency numbers are recognised (R-00).

    ``outside_prefix`` (the PBX's outside-line digit, e.g. "0" or "9") is only
    stripped when what follows is itself a complete number. That resolves the
    collision of an outside "0" with the "00" international prefix: with
    prefix "0", "00612345678" is 0612345678, while "0033612345678" stays +33.
    """
    return _parse(raw, outside_prefix, True)


def parse_caller_id(raw: str) -> Number:
    """Parse a presented caller ID (R-40..R-43): no short numbers, no outside prefix,
    because neither can legitimately appear as a presented number."""
    return _parse(raw, "", False)


def national_digits(raw: str) -> str:
    """The French national form ("0" + significant digits) of a presented
    number, read off its shape alone, or "" for a shape that is not the French
    plan's. No length or allocation check, on purpose: R-41 blocks "any number
    that begins with 06 or 07, whatever the sub-range", including those
    `parse_caller_id` refuses (an unallocated 07 range, +596 690...)."""
    s = _SEPARATORS.sub("", _TRUNK_MARK.sub(r"\1\2", raw.strip()))
    if s.startswith("00"):
        s = "+" + s[2:]
    if not s.startswith("+"):
        return s if s.startswith("0") and s.isascii() and s.isdigit() else ""
    for cc in _FRENCH_CODES:  # country codes are prefix-free
        nsn = s.removeprefix(f"+{cc}")
        if nsn != s and nsn.isascii() and nsn.isdigit():
            nsn = nsn[1:] if cc == 33 and nsn.startswith("0") else nsn
            return ("0508" if cc == 508 else "0") + nsn
    return ""


@lru_cache(maxsize=8192)
def _parse(raw: str, outside_prefix: str, dialled: bool) -> Number:
    # Cached: the same few thousand numbers are dialled over and over, and
    # Number is immutable. Errors are not cached (lru_cache skips exceptions).
    if not isinstance(raw, str):
        raise NumberError(repr(raw), "not a string")
    if len(raw) > MAX_RAW_LENGTH:
        raise NumberError(raw[:MAX_RAW_LENGTH] + "...", f"longer than {MAX_RAW_LENGTH} chars")
    s = _SEPARATORS.sub("", _TRUNK_MARK.sub(r"\1\2", raw.strip()))
    if not s:
        raise NumberError(raw, "empty")
    if not s.isascii():
        raise NumberError(raw, "non-ASCII characters (only 0-9 digits are accepted)")
    if dialled:
        if _SHORT.fullmatch(s):
            return Number(raw, s, Kind.SHORT, Territory.FR, "")
        if outside_prefix and s.startswith(outside_prefix):
            rest = s[len(outside_prefix) :]
            if _SHORT.fullmatch(rest):
                return Number(raw, rest, Kind.SHORT, Territory.FR, "")
            if _NATIONAL.fullmatch(rest) or _INTERNATIONAL.fullmatch(rest):
                s = rest
    if not (s[1:] if s[0] == "+" else s).isdigit():
        raise NumberError(raw, "contains characters other than digits and a leading '+'")

    if _NATIONAL.fullmatch(s):
        return _french(raw, s, None)
    if _INTERNATIONAL.fullmatch(s):
        return _international(raw, "+" + (s[1:] if s[0] == "+" else s[2:]))
    if len(s) == 11 and s.startswith("33"):
        raise NumberError(raw, "country code 33 without '+' or '00' is ambiguous; use +33 or 0")
    raise NumberError(raw, "not a national (0 + 9 digits), +/00 international or short number")


def _international(raw: str, plus: str) -> Number:
    # Country codes are prefix-free, so French-plan codes can be read off the
    # string: skips phonenumbers.parse on the hot path.
    for cc in _FRENCH_CODES:
        code = f"+{cc}"
        if plus.startswith(code):
            nsn = plus[len(code) :]
            if cc == 33 and nsn.startswith("0"):
                nsn = nsn[1:]  # "+33 06..." is "+33 (0)6..." without the brackets
            # Go through the national form so both spellings give the same result.
            national = "0508" + nsn if cc == 508 else "0" + nsn
            if not _NATIONAL.fullmatch(national):
                raise NumberError(raw, f"+{cc} number of the wrong length for the French plan")
            return _french(raw, national, cc)
    phonenumbers = _pn()
    try:
        pn = phonenumbers.parse(plus, None)
    except phonenumbers.NumberParseException as exc:
        raise NumberError(raw, f"phonenumbers: {exc}") from None
    if not phonenumbers.is_valid_number(pn):
        raise NumberError(raw, f"not a valid +{pn.country_code} number")
    e164 = f"+{pn.country_code}{phonenumbers.national_significant_number(pn)}"
    return Number(raw, e164, Kind.FOREIGN, None, "")


def _french(raw: str, national: str, written_cc: int | None) -> Number:
    """``national`` is 0 + 9 digits; ``written_cc`` is the country code the
    caller typed, if any, so "+262 596..." is refused instead of re-routed."""
    entry = None
    for n in _PREFIX_LENGTHS:
        entry = _OVERSEAS.get(national[:n])
        if entry:
            break
    if entry is None:
        return _metropolitan(raw, national)

    cc, territory, table_kind = entry
    if written_cc not in (None, 33, cc):
        raise NumberError(raw, f"prefix {national[:4]} belongs to +{cc}, not +{written_cc}")
    nsn = national[4:] if cc == 508 else national[1:]
    if cc == 508:
        # Saint-Pierre-et-Miquelon has no fixed prefix telling mobile from fixed,
        # so validity and type come from phonenumbers.
        pn = _pn().PhoneNumber(country_code=cc, national_number=int(nsn))
        if not _pn().is_valid_number(pn):
            raise NumberError(raw, "not a valid Saint-Pierre-et-Miquelon (+508) number")
        kind = _kind_of_type(_pn().number_type(pn))
    else:
        # The Arcep prefix plus the 10-digit length (always a possible number)
        # is enough; phonenumbers' validity lists lag Arcep (+596 596... and
        # most 0639 are "invalid"), and refusing those would block real callees.
        kind = table_kind or Kind.FIXED
    territories = frozenset({territory})
    if cc == 590:
        territory, territories = _islands_590(_pn().PhoneNumber(country_code=cc,
                                                                national_number=int(nsn)))
    return Number(raw, f"+{cc}{nsn}", kind, territory, national, territories)


def _islands_590(pn: PhoneNumber) -> tuple[Territory, frozenset[Territory]]:
    """(one island, every island the number may serve). Asking each region
    matters: ``region_code_for_number`` stops at the first match, which put
    Saint-Martin's 0590 87 on Saint-Barthélemy's calendar and every 0690
    mobile on Guadeloupe's."""
    phonenumbers = _pn()
    listed = frozenset(t for region, t in _SHARED_590.items()
                       if phonenumbers.is_valid_number_for_region(pn, region))
    first = _SHARED_590.get(phonenumbers.region_code_for_number(pn) or "", Territory.GP)
    return first, listed or frozenset(_SHARED_590.values())


def _metropolitan(raw: str, national: str) -> Number:
    # Validity matters here: unallocated ranges (e.g. 070...) are typos, R-01.
    if not _valid_metropolitan(national[1:]):
        raise NumberError(raw, "not an allocated French number range")
    first = national[1]
    if first in "67":
        kind = Kind.MOBILE
    elif first in "89":
        kind = Kind.NON_GEOGRAPHIC
    else:
        kind = Kind.FIXED
    return Number(raw, "+33" + national[1:], kind, Territory.FR, national)


# -- validity of metropolitan numbers, decided by their first digits ---------------
# phonenumbers' validity check (~10 us: a dozen regex matches) dominated the
# parsing of a lead list, in which numbers are all different but share their
# first digits. Each pattern of the French metadata is a fixed-width head
# followed by "any n digits" (`(?:6(?:[0-24-8]\d|3[0-8]|9[589])|7[3-9]\d)\d{6}`),
# so for a national significant number of a given length the answer depends
# on its first few digits only: `_decisive_digits` reads how many from the
# patterns themselves (None, and no sharing, for a pattern of another shape).
# tests/test_numbers.py compares the shared answers with phonenumbers'.

_VALID_FR: dict[tuple[int, str], bool] = {}
_VALID_FR_MAX = 200_000  # prefixes kept; cleared when full
# Every 9-digit +33 number's validity, read off its first `depth` digits: a
# bit per prefix from 10**(depth-1), as `fr_validity_table` builds it. Handed
# in by a per-call process from its start-up cache (pbx.startup_cache), so
# that it needs neither phonenumbers nor its ~10 us per new prefix.
_FR_TABLE: tuple[int, bytes] | None = None
FR_NSN_LENGTH = 9


def _valid_metropolitan(nsn: str) -> bool:
    """phonenumbers.is_valid_number for +33 `nsn` (9 digits, first not 0),
    shared by the numbers whose decisive leading digits are the same."""
    if _FR_TABLE is not None and len(nsn) == FR_NSN_LENGTH:
        lead, bits = _FR_TABLE
        index = int(nsn[:lead]) - 10 ** (lead - 1)
        return bool(bits[index >> 3] >> (index & 7) & 1)
    depth = _metropolitan_depth()
    key = (len(nsn), nsn if depth is None else nsn[:depth])
    valid = _VALID_FR.get(key)
    if valid is None:
        valid = _phonenumbers_valid_fr(nsn)
        if len(_VALID_FR) >= _VALID_FR_MAX:
            _VALID_FR.clear()
        _VALID_FR[key] = valid
    return valid


def _phonenumbers_valid_fr(nsn: str) -> bool:
    pn = _pn()
    return bool(pn.is_valid_number(pn.PhoneNumber(country_code=33, national_number=int(nsn))))


def fr_validity_table() -> tuple[int, bytes] | None:
    """(depth, bits): the validity of every 9-digit +33 number by its first
    `depth` digits, from phonenumbers (~0.8 s); None when the metadata's
    patterns do not say how many digits decide (then nothing is shared)."""
    depth = _metropolitan_depth()
    if depth is None or not 1 <= depth <= FR_NSN_LENGTH:
        return None
    first = 10 ** (depth - 1)
    bits = bytearray(_table_bytes(depth))
    pad = "0" * (FR_NSN_LENGTH - depth)
    for index in range(9 * first):
        if _phonenumbers_valid_fr(f"{first + index}{pad}"):
            bits[index >> 3] |= 1 << (index & 7)
    return depth, bytes(bits)


def _table_bytes(depth: int) -> int:
    return int(9 * 10 ** (depth - 1) + 7) // 8  # a bit per prefix, first digit 1-9


def check_fr_table(depth: int, bits: bytes) -> None:
    """ValueError unless `bits` has the size of a table of `depth` digits."""
    if not 1 <= depth <= FR_NSN_LENGTH or len(bits) != _table_bytes(depth):
        raise ValueError(f"a validity table of {len(bits)} bytes does not fit depth {depth}")


def preload_fr_validity(depth: int, bits: bytes) -> None:
    """Use this table (from `fr_validity_table`, same phonenumbers) for
    metropolitan validity. The caller vouches for it (pbx.startup_cache
    checks the versions and a checksum first); a table of the wrong size
    for `depth` is a ValueError."""
    global _FR_TABLE
    check_fr_table(depth, bits)
    _FR_TABLE = (depth, bits)
    _parse.cache_clear()


def forget_fr_validity() -> None:
    """Back to phonenumbers (tests)."""
    global _FR_TABLE
    _FR_TABLE = None
    _parse.cache_clear()


@cache
def _metropolitan_depth() -> int | None:
    """Leading digits that decide every pattern of region FR (+33 is FR
    alone): the largest of the patterns' own, or None if one cannot say."""
    if _sre is None:
        return None
    phonenumbers = _pn()
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("FR")
    if metadata is None or phonenumbers.region_codes_for_country_code(33) != ("FR",):
        return None
    depths = [_decisive_digits(desc.national_number_pattern)
              for desc in vars(metadata).values()
              if isinstance(desc, phonenumbers.PhoneNumberDesc) and desc.national_number_pattern]
    if not depths or any(d is None for d in depths):
        return None
    return max(d for d in depths if d is not None)

def _decisive_digits(pattern: str) -> int | None:
    """How many leading digits decide whether a digit string of a possible
    length fully matches `pattern`; None when the pattern's shape does not
    say (a lookaround, a variable-width part before the end...)."""
    try:
        parsed = _sre.parse(pattern)
    except Exception:  # any surprise means "do not share"
        return None
    return _depth(list(parsed.data))


def _depth(seq: list[Any]) -> int | None:
    """`seq` must match up to the end of the string. A fixed-width part
    decides by its own width; a trailing "any digit(s)" decides nothing; a
    trailing alternative decides by its deepest branch."""
    if any(not _plain(item) for item in seq):
        return None
    while seq and _any_digits(seq[-1]):
        seq = seq[:-1]
    if not seq:
        return 0
    *head, last = seq
    lead = _width(head)
    if lead is None:
        return None
    op, av = last
    if op is _C.BRANCH:
        depths = [_depth(list(branch.data)) for branch in av[1]]
        if any(d is None for d in depths):
            return None
        return lead + max(d for d in depths if d is not None)
    if op is _C.SUBPATTERN:
        inner = _depth(list(av[-1].data))
        return None if inner is None else lead + inner
    width = _width(seq)
    return width


def _width(seq: list[Any]) -> int | None:
    lo, hi = _sre.SubPattern(_sre.State(), seq).getwidth()
    return int(lo) if lo == hi else None


_PLAIN_OPS = ("LITERAL", "NOT_LITERAL", "IN", "ANY", "BRANCH", "SUBPATTERN", "MAX_REPEAT",
              "MIN_REPEAT")


def _plain(item: Any) -> bool:
    """Only parts that consume their own characters: no lookaround, anchor or
    back-reference, which could look past the digits that decide."""
    op, av = item
    if op.name not in _PLAIN_OPS:
        return False
    if op is _C.BRANCH:
        return all(_plain(i) for branch in av[1] for i in branch.data)
    if op is _C.SUBPATTERN:
        return all(_plain(i) for i in av[-1].data)
    if op in (_C.MAX_REPEAT, _C.MIN_REPEAT):
        return all(_plain(i) for i in av[2].data)
    return True


def _any_digits(item: Any) -> bool:
    """`\\d` or `\\d{n}`: any digit, as many as the length leaves."""
    op, av = item
    if op in (_C.MAX_REPEAT, _C.MIN_REPEAT):
        low, high, inner = av
        return bool(low == high and len(inner.data) == 1 and _any_digits(inner.data[0]))
    return bool(op is _C.IN and av in ([(_C.CATEGORY, _C.CATEGORY_DIGIT)], [(_C.RANGE, (48, 57))]))
