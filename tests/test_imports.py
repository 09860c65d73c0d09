"""Imports are all or nothing, with per-line errors."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

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
