"""The CLI contract: exit codes, JSON shape, and every command documented."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sentinelle.cli.main import main

README = Path(__file__).parent.parent / "README.md"
NPV = "0162000000"


@pytest.fixture
def cli(config_path):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["--config", str(config_path), *args], catch_exceptions=False)

    invoke("init")
    return invoke


def _commands(group: click.Group, prefix: str = "sentinelle") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix} {name}")
        else:
            out.append(f"{prefix} {name}")
    return out


def test_every_command_is_documented_in_readme():
    text = README.read_text()
    missing = [c for c in _commands(main) if f"### {c}\n" not in text]
    assert not missing, f"undocumented commands: {missing}"


def test_check_exit_codes_and_json(cli):
    r = cli("check", "0612345678", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-12-01T10:30", "--json")
    assert r.exit_code == 1
    data = json.loads(r.output)
    assert data["verdict"] == "block" and data["rules"] == ["R-11"]
    assert data["regime"] == "fr-2026" and data["retry_at"] is None
    assert data["callee"] == {"e164": "+33612345678", "territory": "FR", "kind": "mobile",
                              "timezone": "Europe/Paris",
                              "local_time": "2026-12-01T10:30:00+01:00"}
    r = cli("consent", "add", "0612345678", "--campaign", "promo", "--source", "web",
            "--at", "2026-11-01T09:00")
    assert r.exit_code == 0
    r = cli("check", "0612345678", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-12-01T10:30:00+01:00", "--json", "--record")
    assert r.exit_code == 0
    assert json.loads(r.output)["attempt_id"] == 1


def test_check_usage_errors_exit_2(cli):
    assert cli("check", "0612345678").exit_code == 2  # several campaigns, none named
    assert cli("check", "0612345678", "--campaign", "nope").exit_code == 2
    assert cli("check", "0612345678", "--campaign", "promo", "--at", "tomorrow").exit_code == 2
    assert cli("check", "0612345678", "--campaign", "promo", "--masked",
               "--caller-id", NPV).exit_code == 2


def test_at_offset_decides_in_callee_time(cli):
    """13:30 in Réunion is 10:30 in Paris: R-20 is judged in the callee's time."""
    cli("consent", "add", "0692123456", "--campaign", "promo", "--source", "web",
        "--at", "2026-11-01T09:00")
    r = cli("check", "0692123456", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-12-01T09:30:00Z", "--json")
    data = json.loads(r.output)
    assert data["callee"]["territory"] == "RE"
    assert data["rules"] == ["R-20"] and r.exit_code == 1
    assert data["retry_at"].startswith("2026-12-01T11:00:00+01:00")  # 14:00 in Réunion


def test_refusal_then_history(cli):
    cli("consent", "add", "0612345678", "--campaign", "promo", "--source", "web",
        "--at", "2026-11-01T09:00")
    r = cli("refusal", "add", "06.12.34.56.78", "--campaign", "promo", "--at", "2026-11-20T11:00")
    assert "recorded" in r.output
    r = cli("check", "0612345678", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-12-01T10:30", "--json")
    assert set(json.loads(r.output)["rules"]) == {"R-11", "R-31"}
    r = cli("history", "0612345678", "--json")
    data = json.loads(r.output)
    assert len(data["refusals"]) == 1 and data["consents"][0]["revoked_at"]


def test_optout_and_contract(cli):
    assert "added" in cli("optout", "add", "0612345678", "--campaign", "promo").output
    r = cli("check", "0612345678", "--campaign", "service", "--caller-id", NPV,
            "--at", "2026-12-01T10:30", "--json")
    assert json.loads(r.output)["rules"] == ["R-12"]
    assert "removed" in cli("optout", "remove", "0612345678", "--campaign", "promo").output
    cli("contract", "add", "0612345678", "--campaign", "promo", "--product", "energy")
    r = cli("check", "0612345678", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-12-01T10:30")
    assert r.exit_code == 0


def test_import_bloctel_rejects_bad_file_with_line_number(cli, tmp_path):
    f = tmp_path / "b.txt"
    f.write_text("0612345678\nnot-a-number\n")
    r = cli("import", "bloctel", str(f), "--campaign", "promo", "--date", "2026-07-01")
    assert r.exit_code == 1 and "line 2" in r.output
    f.write_text("0612345678\n")
    r = cli("import", "bloctel", str(f), "--campaign", "promo", "--date", "2026-07-01")
    assert r.exit_code == 0 and "imported 1" in r.output
    r = cli("check", "0612345678", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-07-02T10:30", "--json")
    assert json.loads(r.output)["rules"] == ["R-10"]


def test_rules_lists_every_rule_id():
    out = CliRunner().invoke(main, ["rules"]).output
    ids = re.findall(r"^(R-\d\d)", out, re.M)
    assert ids == ["R-00", "R-01", "R-02", "R-10", "R-11", "R-12", "R-13", "R-20", "R-21", "R-22",
                   "R-30", "R-31", "R-40", "R-41", "R-42", "R-43"]


def test_invalid_config_names_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\nforeign = "maybe"\n')
    r = CliRunner().invoke(main, ["--config", str(bad), "check", "112"])
    assert r.exit_code == 2 and "policy.foreign" in r.output


def test_console_script_runs(tmp_path):
    """The installed entry point, as admins and the dialplan demo use it."""
    exe = Path(__file__).parent.parent / ".venv" / "bin" / "sentinelle"
    cmd = [str(exe)] if exe.exists() else ["sentinelle"]
    r = subprocess.run([*cmd, "check", "112", "--json"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["notes"][0].startswith("R-00")


def test_serve_refuses_exposed_listener_without_allow_list(config_path):
    r = CliRunner().invoke(main, ["--config", str(config_path), "serve", "--listen",
                                  "0.0.0.0:4573", "--check-config"])
    assert r.exit_code == 2 and "server.allow" in r.output
    r = CliRunner().invoke(main, ["--config", str(config_path), "serve", "--check-config"])
    assert r.exit_code == 0 and "config ok" in r.output


def test_import_bloctel_refuses_a_future_date(cli, tmp_path):
    f = tmp_path / "b.txt"
    f.write_text("0612345678\n")
    r = cli("import", "bloctel", str(f), "--campaign", "promo", "--date", "2099-01-01")
    assert r.exit_code == 2 and "in the future" in r.output


def test_times_are_paris_time_with_the_offset(cli):
    """One rule for times: Paris time with its offset, in text and JSON, with
    or without --at (the JSON `at` used to be UTC with microseconds)."""
    r = cli("consent", "add", "0612345678", "--campaign", "promo", "--source", "web",
            "--at", "2026-11-02T09:00")
    assert r.exit_code == 0, r.output
    cli("check", "0612345678", "--campaign", "promo", "--caller-id", NPV,
        "--at", "2026-12-02T10:30", "--record")
    out = cli("history", "0612345678").output
    assert "at=2026-12-02T10:30:00+01:00" in out and "given_at=2026-11-02T09:00:00+01:00" in out
    assert "+00:00" not in out
    data = json.loads(cli("history", "0612345678", "--json").output)
    assert data["attempts"][0]["at"] == "2026-12-02T10:30:00+01:00"
    utc = json.loads(cli("history", "0612345678", "--json", "--tz", "UTC").output)
    assert utc["attempts"][0]["at"] == "2026-12-02T09:30:00+00:00"
    at_given = json.loads(cli("check", "0612345678", "--campaign", "promo", "--json",
                              "--at", "2026-12-02T09:30Z").output)["at"]
    assert at_given == "2026-12-02T10:30:00+01:00"
    now = json.loads(cli("check", "0612345678", "--campaign", "promo", "--json").output)["at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00", now), now
    text = cli("check", "0612345678", "--campaign", "promo", "--at", "2026-12-02T10:30").output
    assert "local Wed 2026-12-02 10:30+01:00" in text


def test_root_refuses_a_store_owned_by_the_service_user(tmp_path):
    """As root, on a store whose owner is the service user, an admin command
    would leave root-owned -wal/-shm files the service cannot write: refused,
    naming the user to run as, and nothing is created."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root to create a store owned by another user")
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)  # nobody:nogroup, standing in for `sentinelle`
    config = tmp_path / "sentinelle.toml"
    config.write_text(f'[store]\npath = "{state}/sentinelle.db"\n')
    for args in (["init"], ["history", "0612345678"],
                 ["consent", "add", "0612345678", "--source", "web", "--campaign", "default"]):
        r = CliRunner().invoke(main, ["--config", str(config), *args])
        assert r.exit_code == 2, (args, r.output)
        assert "sudo -u nobody sentinelle" in r.output
    assert list(state.iterdir()) == []
    os.chown(state, 0, 0)
    r = CliRunner().invoke(main, ["--config", str(config), "init"])
    assert r.exit_code == 0 and (state / "sentinelle.db").exists()


def test_import_bloctel_refuses_an_empty_file_and_keeps_the_list(cli, tmp_path):
    """Issue #10 item 1: `: > empty.csv` used to replace the list (exit 0)."""
    f = tmp_path / "b.txt"
    f.write_text("0612345678\n0611111111\n0622222222\n")
    assert cli("import", "bloctel", str(f), "--campaign", "promo", "--date", "2026-07-01").exit_code == 0
    for data in (b"", b"<html><body>Service indisponible</body></html>", b"\x00\x01binary"):
        empty = tmp_path / "empty.csv"
        empty.write_bytes(data)
        r = cli("import", "bloctel", str(empty), "--campaign", "promo", "--date", "2026-07-02")
        assert r.exit_code == 1 and "nothing imported" in r.output and "imported 0" not in r.output
    r = cli("check", "0612345678", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-07-02T10:30", "--json")
    assert json.loads(r.output)["rules"] == ["R-10"]  # still opposed, on the 07-01 snapshot
    f.write_text("0612345678\n")
    r = cli("import", "bloctel", str(f), "--campaign", "promo", "--date", "2026-07-02")
    assert r.exit_code == 1 and "--allow-shrink" in r.output
    r = cli("import", "bloctel", str(f), "--campaign", "promo", "--date", "2026-07-02",
            "--allow-shrink")
    assert r.exit_code == 0 and "imported 1" in r.output


def test_import_csv_refuses_a_header_without_rows(cli, tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("number,department\n")
    r = cli("import", "departments", str(f))
    assert r.exit_code == 1 and "no data row" in r.output


def test_department_971_names_the_island_of_a_590_mobile(cli, tmp_path):
    """With department 971 imported, a 0690 mobile is judged on Guadeloupe's
    calendar only: Saint-Barthélemy's 9 October is open, 27 May is not."""
    d = tmp_path / "d.csv"
    d.write_text("number,department\n0690123456,971\n")
    assert cli("import", "departments", str(d)).exit_code == 0
    cli("consent", "add", "0690123456", "--campaign", "promo", "--source", "web",
        "--at", "2026-10-01T09:00")
    r = cli("check", "0690123456", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-10-09T11:00:00-04:00", "--json")
    assert r.exit_code == 0, r.output
    b = tmp_path / "b.txt"
    b.write_text("0612345678\n")
    cli("import", "bloctel", str(b), "--campaign", "promo", "--date", "2026-05-26")
    r = cli("check", "0690123456", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-05-27T11:00:00-04:00", "--json")
    assert json.loads(r.output)["rules"] == ["R-21"]
    d.write_text("number,department\n0690123456,977\n")
    cli("import", "departments", str(d))
    r = cli("check", "0690123456", "--campaign", "promo", "--caller-id", NPV,
            "--at", "2026-10-09T11:00:00-04:00", "--json")
    assert json.loads(r.output)["rules"] == ["R-21"]


def _from_now(**delta: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(**delta)).isoformat(timespec="seconds")


@pytest.mark.parametrize("command", [
    ("consent", "add", "0612345678", "--campaign", "promo", "--source", "web"),
    ("consent", "revoke", "0612345678", "--campaign", "promo"),
    ("refusal", "add", "0612345678", "--campaign", "promo"),
])
def test_future_instants_are_refused_unless_allowed(cli, command):
    """Issue #10 item 14: a consent or refusal dated next year by a typo would
    keep a consent alive (or a callee callable) for the wrong year."""
    r = cli(*command, "--at", _from_now(days=365))
    assert r.exit_code == 2 and "--at" in r.output and "in the future" in r.output
    assert "--allow-future" in r.output
    timeline = json.loads(cli("history", "0612345678", "--json").output)
    assert timeline["consents"] == [] and timeline["refusals"] == []
    assert cli(*command, "--at", _from_now(minutes=3)).exit_code == 0  # clock skew tolerated
    assert cli(*command, "--at", _from_now(days=365), "--allow-future").exit_code == 0


def test_import_consents_refuses_a_future_given_at(cli, tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("number,campaign,given_at,source\n"
                 f"0612345678,promo,2026-11-01T10:00:00+01:00,web\n0611111111,promo,{_from_now(days=365)},web\n")
    r = cli("import", "consents", str(f))
    assert r.exit_code == 1 and "line 3" in r.output and "given_at" in r.output
    assert "in the future" in r.output
    assert json.loads(cli("history", "0612345678", "--json").output)["consents"] == []
    r = cli("import", "consents", str(f), "--allow-future")
    assert r.exit_code == 0 and "imported 2" in r.output
