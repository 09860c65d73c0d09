"""Imports are all or nothing, with per-line errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sentinelle.core.clock import FUTURE_TOLERANCE
from sentinelle.imports import ImportRejected, bloctel_number, import_bloctel, import_csv

PARIS = ZoneInfo("Europe/Paris")


def _bloctel_state(store, e164: str, day=date(2026, 7, 2)):
    h = store.history("acme", e164, datetime(day.year, day.month, day.day, 11, tzinfo=PARIS))
    return None if h.bloctel is None else (h.bloctel.snapshot_date, h.bloctel.listed)


@pytest.mark.parametrize(("line", "expected"), [
    ("0612345678", 33612345678),
    ("0692123456", 262692123456),  # Réunion mobile, not +33
    ("0596123456", 596596123456),  # Martinique, which phonenumbers reads as +33
    ("+33 1 42 00 00 00", 33142000000),
    ("0033612345678", 33612345678),
])
def test_bloctel_number_normalises(line, expected):
    assert bloctel_number(line) == expected


def test_bloctel_import_bom_crlf_header_duplicates(store, tmp_path):
    f = tmp_path / "b.csv"
    f.write_bytes("\ufeffnumero\r\n0612345678\r\n0612345678\r\n\r\n06 11 11 11 11;x\r\n".encode())
    res = import_bloctel(store, "acme", f, date(2026, 7, 1), "opposed")
    assert res.count == 2 and not res.skipped
    assert _bloctel_state(store, "+33612345678") == (date(2026, 7, 1), True)
    assert _bloctel_state(store, "+33611111111") == (date(2026, 7, 1), True)


def test_bloctel_bad_line_aborts_and_keeps_previous_snapshot(store, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("0612345678\n")
    import_bloctel(store, "acme", good, date(2026, 7, 1), "opposed")
    bad = tmp_path / "bad.txt"
    bad.write_text("0699999999\n" * 3 + "06ABC\n0611111111\n")
    with pytest.raises(ImportRejected, match="line 4") as exc:
        import_bloctel(store, "acme", bad, date(2026, 7, 2), "opposed")
    assert exc.value.errors[0].line == 4
    assert _bloctel_state(store, "+33612345678") == (date(2026, 7, 1), True)
    assert _bloctel_state(store, "+33699999999") == (date(2026, 7, 1), False)


def test_bloctel_skip_invalid_reports_lines(store, tmp_path):
    f = tmp_path / "mixed.txt"
    f.write_text("0612345678\nhello\n112\n+4420\n0611111111\n")
    res = import_bloctel(store, "acme", f, date(2026, 7, 1), "opposed", skip_invalid=True)
    assert res.count == 2
    assert [e.line for e in res.skipped] == [2, 3, 4]


CONSENTS = (
    "number;campaign;given_at;source;channel;wording;evidence_ref;slot_from;slot_until\r\n"
    "0612345678;promo;2026-11-01T10:00;web-form;web;v3;ev-1;;\r\n"
    "0692123456;promo;2026-11-02T10:00+04:00;call;phone;v3;ev-2;2026-12-05T18:00;2026-12-05T19:00\r\n"
)


def test_consents_csv_with_bom_crlf_semicolons(store, config, tmp_path):
    f = tmp_path / "c.csv"
    f.write_bytes(("\ufeff" + CONSENTS).encode())
    res = import_csv(store, config, "consents", f)
    assert res.count == 2
    rows = store.run(lambda c: c.execute(
        "SELECT e164, source, evidence_ref, slot_from FROM consents ORDER BY id").fetchall())
    assert rows[0] == ("+33612345678", "web-form", "ev-1", None)
    assert rows[1][0] == "+262692123456" and rows[1][3] is not None


def test_consents_invalid_lines_nothing_imported(store, config, tmp_path):
    f = tmp_path / "c.csv"
    f.write_text(CONSENTS
                 + "06ZZ;promo;2026-11-01T10:00;web;;;;;\n"
                 + "0612345678,promo,2026-11-01T10:00,web,,,,,\n"  # mixed separator
                 + "0612345678;nosuch;2026-11-01T10:00;web;;;;;\n"
                 + "0612345678;promo;2026-11-01T10:00;;;;;;\n")  # no source: unprovable
    with pytest.raises(ImportRejected) as exc:
        import_csv(store, config, "consents", f)
    assert [e.line for e in exc.value.errors] == [4, 5, 6, 7]
    assert "source" in str(exc.value.errors[3])
    assert store.count("consents") == 0


def test_departments_and_contracts(store, config, tmp_path):
    d = tmp_path / "d.csv"
    d.write_text("number,department\n0388000000,67\n0142000000,75\n")
    assert import_csv(store, config, "departments", d).count == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("number,department\n0388000000,99\n")
    with pytest.raises(ImportRejected, match="unknown department"):
        import_csv(store, config, "departments", bad)
    c = tmp_path / "c.csv"
    c.write_text("number,professional,product\n0612345678,acme,energy\n")
    assert import_csv(store, config, "contracts", c).count == 1
    h = store.history("acme", "+33612345678", datetime(2026, 12, 1, 11, tzinfo=PARIS))
    assert h.contract


# --- files that are not lists: refused, the current data untouched (issue #10, item 1) ---

# name -> (bytes, what the refusal must say)
NOT_A_BLOCTEL_LIST = {
    "empty": (b"", "no valid number"),
    "blank lines": (b"\n\r\n   \n", "no valid number"),
    "header only": (b"numero\r\n", "no valid number"),
    "html error page": (b"<html><body>Service indisponible</body></html>", "HTML/XML"),
    "html page on lines": (b"<!DOCTYPE html>\n<html>\n<body>Erreur 503</body>\n</html>\n", "HTML/XML"),
    "xml": (b'<?xml version="1.0"?>\n<error code="503"/>\n', "HTML/XML"),
    "markup after numbers": (b"0611111111\n<p>truncated</p>\n", "HTML/XML"),
    "binary": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)), "not a text file"),
    "utf-16": ("numero\n0612345678\n".encode("utf-16"), "not a text file"),
    "invalid utf-8 past a BOM": (b"\xef\xbb\xbf0611111111\n0622222222 \xff\xfe\n", "not UTF-8"),
}


@pytest.mark.parametrize("skip_invalid", [False, True])
@pytest.mark.parametrize("name", NOT_A_BLOCTEL_LIST)
def test_bloctel_refuses_a_file_that_is_not_a_list(store, tmp_path, name, skip_invalid):
    """An empty answer, an error page or a binary file must never become the
    opposition list: every opposed number would turn callable (R-10)."""
    good = tmp_path / "good.txt"
    good.write_text("0612345678\n0699999999\n")
    import_bloctel(store, "acme", good, date(2026, 7, 1), "opposed")
    data, why = NOT_A_BLOCTEL_LIST[name]
    f = tmp_path / "answer.csv"
    f.write_bytes(data)
    with pytest.raises(ImportRejected, match="nothing imported") as exc:
        import_bloctel(store, "acme", f, date(2026, 7, 2), "opposed", skip_invalid=skip_invalid)
    assert why in str(exc.value)
    assert _bloctel_state(store, "+33612345678") == (date(2026, 7, 1), True)
    assert [(s.snapshot_date, s.count) for s in store.snapshots("acme")] == [(date(2026, 7, 1), 2)]
    assert store.count("bloctel_snapshots") == 1  # nothing written


def _numbers_file(tmp_path, name: str, n: int, start: int = 0):
    f = tmp_path / name
    f.write_text("".join(f"06{start + i:08d}\n" for i in range(n)))
    return f


def test_bloctel_refuses_a_snapshot_under_half_the_current_one(store, tmp_path):
    import_bloctel(store, "acme", _numbers_file(tmp_path, "big", 10), date(2026, 7, 1), "opposed")
    small = _numbers_file(tmp_path, "small", 4)
    with pytest.raises(ImportRejected, match="--allow-shrink") as exc:
        import_bloctel(store, "acme", small, date(2026, 7, 2), "opposed")
    assert "4 numbers" in str(exc.value) and "10" in str(exc.value)
    assert [(s.snapshot_date, s.count) for s in store.snapshots("acme")] == [(date(2026, 7, 1), 10)]
    assert _bloctel_state(store, "+33600000009") == (date(2026, 7, 1), True)
    assert store.count("bloctel_snapshots") == 1  # nothing written, not even an aborted load
    # Duplicates hide a shrink from the early count: the switch itself refuses it.
    padded = tmp_path / "padded"
    padded.write_text(small.read_text() * 3)
    with pytest.raises(ImportRejected, match="--allow-shrink"):
        import_bloctel(store, "acme", padded, date(2026, 7, 2), "opposed")
    assert [(s.snapshot_date, s.count) for s in store.snapshots("acme")] == [(date(2026, 7, 1), 10)]
    loading = store.run(lambda c: c.execute(
        "SELECT count(*) FROM bloctel_snapshots WHERE state='loading'").fetchone()[0])
    assert loading == 0
    # Exactly half is not "less than half"; the admin can accept a real shrink.
    half = _numbers_file(tmp_path, "half", 5)
    assert import_bloctel(store, "acme", half, date(2026, 7, 2), "opposed").count == 5
    res = import_bloctel(store, "acme", _numbers_file(tmp_path, "two", 2), date(2026, 7, 3),
                         "opposed", allow_shrink=True)
    assert res.count == 2


def test_bloctel_shrink_compares_same_professional_and_kind(store, tmp_path):
    import_bloctel(store, "acme", _numbers_file(tmp_path, "big", 10), date(2026, 7, 1), "opposed")
    one = _numbers_file(tmp_path, "one", 1)
    assert import_bloctel(store, "other", one, date(2026, 7, 1), "opposed").count == 1
    assert import_bloctel(store, "acme", one, date(2026, 7, 2), "cleaned").count == 1


NOT_A_CSV = {
    "empty": (b"", "empty file"),
    "header only": (b"number;department\r\n", "no data row"),
    "header and blank lines": (b"number;department\n\n;\n", "no data row"),
    "html error page": (b"<html><body>Service indisponible</body></html>\n", "HTML/XML"),
    "xml": (b'<?xml version="1.0"?>\n<error/>\n', "HTML/XML"),
    "binary": (b"number;department\n0388000000;67\x00\x00\x01\n", "not a text file"),
}


@pytest.mark.parametrize("what", ["consents", "contracts", "departments"])
@pytest.mark.parametrize("name", NOT_A_CSV)
def test_csv_refuses_a_file_that_is_not_data(store, config, tmp_path, what, name):
    data, why = NOT_A_CSV[name]
    if what != "departments":
        data = data.replace(b"department", b"campaign").replace(b";67", b";promo")
    f = tmp_path / "x.csv"
    f.write_bytes(data)
    with pytest.raises(ImportRejected, match="nothing imported") as exc:
        import_csv(store, config, what, f, skip_invalid=True)
    assert why in str(exc.value)
    assert store.count(what) == 0


def test_csv_refuses_when_every_row_is_skipped(store, config, tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("number,department\n06ZZ,75\n0612345678,99\n")
    with pytest.raises(ImportRejected, match="no valid row"):
        import_csv(store, config, "departments", f, skip_invalid=True)
    assert store.count("departments") == 0


def test_consents_given_in_the_future_are_refused(store, config, tmp_path):
    """A given_at past `now` + FUTURE_TOLERANCE is a typo until said otherwise:
    the consent would stay valid up to a year too long (R-11)."""
    now = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    skewed = now + FUTURE_TOLERANCE - timedelta(seconds=1)
    f = tmp_path / "c.csv"
    f.write_text("number;campaign;given_at;source\n"
                 "0612345678;promo;2026-11-01T10:00;web\n"
                 f"0611111111;promo;{skewed.isoformat()};web\n"
                 "0622222222;promo;2027-11-01T10:00;web\n")
    with pytest.raises(ImportRejected) as exc:
        import_csv(store, config, "consents", f, now=now)
    assert [e.line for e in exc.value.errors] == [4]
    assert "given_at" in str(exc.value) and "in the future" in str(exc.value)
    assert store.count("consents") == 0
    res = import_csv(store, config, "consents", f, now=now, skip_invalid=True)
    assert res.count == 2 and [e.line for e in res.skipped] == [4]
    assert import_csv(store, config, "consents", f, now=now, allow_future=True).count == 3


def test_future_tolerance_is_five_minutes():
    assert timedelta(minutes=5) == FUTURE_TOLERANCE


def test_every_invalid_bloctel_line_in_one_run_first_100_then_a_count(store, tmp_path):
    """Without --skip-invalid the import used to stop at the first bad line, so
    an admin fixed a file one error per run. Now: every invalid line is
    counted, the first 100 are named, and still nothing is imported."""
    lines = ["0612345678"] + [f"06444{i:03d}" for i in range(150)] + ["0611111111", "garbage"]
    f = tmp_path / "b.csv"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportRejected) as err:
        import_bloctel(store, "acme", f, date(2026, 7, 1), "opposed")
    text = str(err.value)
    assert err.value.total == 151 and len(err.value.errors) == 100
    assert "151 invalid line(s), nothing imported" in text
    assert "line 2:" in text and "line 101:" in text and "line 102:" not in text
    assert "... and 51 more invalid line(s)" in text
    assert _bloctel_state(store, "+33612345678") is None
    skipped = import_bloctel(store, "acme", f, date(2026, 7, 1), "opposed", skip_invalid=True)
    assert skipped.count == 2 and skipped.invalid == 151 and len(skipped.skipped) == 100


def test_every_invalid_csv_line_in_one_run(config, store, tmp_path):
    f = tmp_path / "c.csv"
    rows = ["number,campaign,given_at,source"] + [
        f"0612345{i:03d},promo,2026-01-01T10:00,{'web' if i % 2 else ''}" for i in range(240)]
    f.write_text("\n".join(rows) + "\n")
    with pytest.raises(ImportRejected) as err:
        import_csv(store, config, "consents", f)
    assert err.value.total == 120 and len(err.value.errors) == 100
    assert "... and 20 more invalid line(s)" in str(err.value)
    assert store.count("consents") == 0


def test_a_csv_header_without_a_number_column_says_so(config, store, tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("phone_no,campaign,given_at,source\n0612345678,promo,2026-01-01T10:00,web\n")
    with pytest.raises(ImportRejected) as err:
        import_csv(store, config, "consents", f)
    assert "the CSV header has no number column (one of number" in str(err.value)
    assert "config key" not in str(err.value)
