"""Configuration loading (policy.py).

A typo in a compliance setting must stop the service with a message naming
the key, never fall back silently to a default: every invalid key, type or
value below must raise ConfigError carrying that key.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest

from sentinelle.config import (
    CONFIG_ENV,
    DEFAULT_CAMPAIGN,
    DEFAULT_PROFESSIONAL,
    ConfigError,
    load_config,
    parse_config,
)
from sentinelle.core.model import Campaign, Dialing, Policy, Purpose, Regime, Sector, regime_for

SCHEMA = """
[store]
path = "sentinelle.db"
[policy]
regime = "auto"
consent_max_age_days = 365
foreign = "block"
[professionals.acme]
caller_ids = ["0142000000"]
[campaigns.promo]
professional = "acme"
purpose = "prospecting"
dialing = "automated"
"""


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's environment must not leak into what a test loads."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv("SENTINELLE_ARI_PASSWORD", raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sentinelle.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_documented_schema_loads(tmp_path):
    config = load_config(str(write(tmp_path, SCHEMA)))
    assert config.store.path == str(tmp_path / "sentinelle.db")  # relative to the config file
    assert config.policy == Policy(regime="auto", consent_max_age_days=365, foreign="block")
    assert config.professionals["acme"].caller_ids == frozenset({"+33142000000"})
    promo = config.campaign(None)  # the only campaign
    assert promo == Campaign("promo", "acme", Purpose.PROSPECTING, Dialing.AUTOMATED, fail_open=False)
    assert config.professional_of(promo).name == "acme"
    assert config.source == str(tmp_path / "sentinelle.toml")


def test_every_key_loads(tmp_path):
    text = SCHEMA.replace('path = "sentinelle.db"', 'path = "/var/lib/s.db"\nbusy_timeout_ms = 500\n'
                          'synchronous = "full"') + """
[professionals.acme2]
caller_ids = ["+33 1 42 00 00 01", "0033162000000"]
technical_caller_ids = ["0937123456"]
[campaigns.press]
professional = "acme2"
purpose = "press"
dialing = "manual"
fail_open = true
[server]
listen = "0.0.0.0:4573"
allow = ["10.0.0.0/8"]
request_timeout_s = 1
header_timeout_s = 0.5
max_connections = 10
[ari]
url = "http://127.0.0.1:8088"
user = "sentinelle"
password = "inline"
app = "sent"
refusal_dtmf = "*8"
dtmf_gap_s = 2
"""
    text = text.replace('foreign = "block"', 'foreign = "allow"\noutside_prefix = "0"\n'
                        'cautious_alsace = false\nbloctel_max_age_days = 20\nretention_days = 1000')
    c = load_config(str(write(tmp_path, text)))
    assert c.store.path == "/var/lib/s.db" and c.store.busy_timeout_ms == 500
    assert c.store.synchronous == "full"
    assert c.policy.foreign == "allow" and c.policy.outside_prefix == "0"
    assert c.policy.cautious_alsace is False and c.policy.bloctel_max_age_days == 20
    assert c.professionals["acme2"].caller_ids == frozenset({"+33142000001", "+33162000000"})
    assert c.professionals["acme2"].technical_caller_ids == frozenset({"+33937123456"})
    press = c.campaign("press")
    assert press.purpose is Purpose.PRESS and press.dialing is Dialing.MANUAL and press.fail_open
    assert c.server.request_timeout_s == 1.0 and isinstance(c.server.request_timeout_s, float)
    assert (c.server.host, c.server.port) == ("0.0.0.0", 4573)
    assert c.ari.password == "inline" and c.ari.dtmf_gap_s == 2.0
    assert "inline" not in repr(c.ari)  # secrets stay out of logs


# Each case: (section text appended or substituted, key the error must name).
INVALID = [
    ('[store]\npath = 1', "store.path"),
    ('[store]\nsynchronous = "off"', "store.synchronous"),
    ('[store]\nbusy_timeout_ms = "1500"', "store.busy_timeout_ms"),
    ('[store]\nbusy_timeout_ms = -1', "store.busy_timeout_ms"),
    ('[policy]\nregime = "fr-2024"', "policy.regime"),
    ('[policy]\nregime = "FR-2026"', "policy.regime"),
    ("[policy]\nconsent_max_age_days = 0", "policy.consent_max_age_days"),
    ("[policy]\nconsent_max_age_days = -365", "policy.consent_max_age_days"),
    ('[policy]\nconsent_max_age_days = "365"', "policy.consent_max_age_days"),
    ("[policy]\nconsent_max_age_days = 365.0", "policy.consent_max_age_days"),
    ("[policy]\nconsent_max_age_days = true", "policy.consent_max_age_days"),
    ("[policy]\nconsent_max_age_days = 9999999999", "policy.consent_max_age_days"),
    ('[policy]\nforeign = "maybe"', "policy.foreign"),
    ('[policy]\ncautious_alsace = "yes"', "policy.cautious_alsace"),
    ("[policy]\nbloctel_max_age_days = 0", "policy.bloctel_max_age_days"),
    ("[policy]\nretention_days = 0", "policy.retention_days"),
    ('[policy]\noutside_prefix = "a"', "policy.outside_prefix"),
    ("[policy]\noutside_prefix = 0", "policy.outside_prefix"),
    ('[professionals.bad]\ncaller_ids = "0142000000"', "professionals.bad.caller_ids"),
    ("[professionals.bad]\ncaller_ids = [142000000]", "professionals.bad.caller_ids"),
    ('[professionals.bad]\ncaller_ids = ["not a number"]', "professionals.bad.caller_ids"),
    ('[professionals.bad]\ntechnical_caller_ids = ["12"]', "professionals.bad.technical_caller_ids"),
    ('[campaigns.bad]\nprofessional = "acme"\npurpose = "spam"', "campaigns.bad.purpose"),
    ('[campaigns.bad]\nprofessional = "acme"\ndialing = "robot"', "campaigns.bad.dialing"),
    ('[campaigns.bad]\nprofessional = "acme"\nfail_open = "no"', "campaigns.bad.fail_open"),
    ('[campaigns.bad]\nprofessional = "nobody"', "campaigns.bad.professional"),
    ("[campaigns.bad]\nprofessional = 1", "campaigns.bad.professional"),
    ('[campaigns.bad]\npurpose = "service"', "campaigns.bad.professional"),  # no professional
    ('[server]\nlisten = "localhost"', "server.listen"),
    ('[server]\nlisten = "localhost:http"', "server.listen"),
    ('[server]\nlisten = "localhost:99999"', "server.listen"),
    ("[server]\nallow = [10]", "server.allow"),
    ('[server]\nallow = "10.0.0.0/8"', "server.allow"),
    ("[server]\nrequest_timeout_s = 0", "server.request_timeout_s"),
    ('[server]\nheader_timeout_s = "2"', "server.header_timeout_s"),
    ("[server]\nmax_connections = 0", "server.max_connections"),
    ('[ari]\ndtmf_gap_s = "3"', "ari.dtmf_gap_s"),
    ("[ari]\ndtmf_gap_s = 0", "ari.dtmf_gap_s"),
    ("[ari]\npassword = 1", "ari.password"),
    ('[ari]\npassword_file = "missing.txt"', "ari.password_file"),
    ("[ari]\nurl = 1", "ari.url"),
]


def merged(extra: str) -> dict:
    """The base schema with `extra` (TOML) laid over it, key by key: what the
    admin's file would hold after editing one setting."""

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    return merge(tomllib.loads(SCHEMA), tomllib.loads(extra))


@pytest.mark.parametrize(("extra", "key"), INVALID, ids=[k for _, k in INVALID])
def test_invalid_value_names_the_key(tmp_path, extra, key):
    with pytest.raises(ConfigError) as err:
        parse_config(merged(extra), base_dir=tmp_path)
    assert err.value.key == key
    assert f"'{key}'" in str(err.value)


def test_ari_password_type_checked_even_with_env(tmp_path, monkeypatch):
    """The environment may supply the secret, but a wrong inline value is still a typo."""
    monkeypatch.setenv("SENTINELLE_ARI_PASSWORD", "from-env")
    with pytest.raises(ConfigError) as err:
        parse_config(merged("[ari]\npassword = 1"))
    assert err.value.key == "ari.password"


UNKNOWN = [
    ("[extra]\nx = 1", "<top>.extra"),
    ("[store]\npathh = 'x'", "store.pathh"),
    ("[policy]\nforiegn = 'allow'", "policy.foriegn"),
    ("[policy]\nconsent_max_age = 30", "policy.consent_max_age"),
    ("[professionals.acme]\ncallerids = []", "professionals.acme.callerids"),
    ("[campaigns.promo]\nprofessional = 'acme'\npurpos = 'press'", "campaigns.promo.purpos"),
    ("[server]\nport = 1", "server.port"),
    ("[ari]\npasword = 'x'", "ari.pasword"),
]


@pytest.mark.parametrize(("extra", "key"), UNKNOWN, ids=[k for _, k in UNKNOWN])
def test_unknown_keys_rejected(tmp_path, extra, key):
    with pytest.raises(ConfigError) as err:
        parse_config(merged(extra), base_dir=tmp_path)
    assert err.value.key == key
    assert "unknown key" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"store": 3}, "store"),
        ({"policy": []}, "policy"),
        ({"professionals": {"acme": 3}}, "professionals.acme"),
        ({"professionals": {"acme": {}}, "campaigns": {"promo": "x"}}, "campaigns.promo"),
    ],
)
def test_tables_must_be_tables(raw, key):
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert err.value.key == key


def test_campaign_without_professional_rejected():
    with pytest.raises(ConfigError) as err:
        parse_config({"professionals": {"acme": {}}, "campaigns": {"promo": {"purpose": "press"}}})
    assert err.value.key == "campaigns.promo.professional"
    assert "required" in str(err.value)


def test_professionals_without_campaign_rejected():
    """Declaring professionals but no campaign is a half-written file, not a default."""
    with pytest.raises(ConfigError) as err:
        parse_config({"professionals": {"acme": {}}})
    assert err.value.key == "campaigns"


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(str(write(tmp_path, "[store\npath=")))
    assert err.value.key == "<file>"
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / "nope.toml"))
    assert err.value.key == "--config"


# --- defaults and discovery ---------------------------------------------------------------


def test_default_config_without_file_has_one_campaign(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./sentinelle.toml here
    config = load_config(None)
    assert config.source == "<built-in defaults>"
    assert list(config.campaigns) == [DEFAULT_CAMPAIGN]
    campaign = config.campaign(None)
    assert campaign.professional == DEFAULT_PROFESSIONAL
    assert campaign.purpose is Purpose.PROSPECTING and campaign.dialing is Dialing.AUTOMATED
    assert campaign.fail_open is False  # fail closed unless an admin opts out
    assert config.policy == Policy()
    assert config.policy.consent_max_age_days == 365 and config.policy.foreign == "block"
    assert config.policy.cautious_alsace is True and config.policy.bloctel_max_age_days == 30


def test_empty_file_gives_the_default_campaign(tmp_path):
    config = load_config(str(write(tmp_path, "")))
    assert list(config.campaigns) == [DEFAULT_CAMPAIGN]


def test_config_found_through_env_then_cwd(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "custom.toml").write_text(SCHEMA)
    monkeypatch.chdir(tmp_path)
    write(tmp_path, SCHEMA.replace("promo", "local"))
    assert "local" in load_config(None).campaigns  # ./sentinelle.toml
    monkeypatch.setenv(CONFIG_ENV, str(other / "custom.toml"))
    assert "promo" in load_config(None).campaigns  # the environment wins over cwd
    assert "local" in load_config(str(tmp_path / "sentinelle.toml")).campaigns  # --config wins


def test_campaign_none_with_several_campaigns_errors(tmp_path):
    text = SCHEMA + '\n[campaigns.other]\nprofessional = "acme"\n'
    config = load_config(str(write(tmp_path, text)))
    with pytest.raises(ConfigError) as err:
        config.campaign(None)
    assert err.value.key == "campaigns"
    assert config.campaign("other").name == "other"
    with pytest.raises(ConfigError) as err:
        config.campaign("nope")
    assert err.value.key == "campaigns.nope"
    assert "other, promo" in str(err.value)


# --- secrets ------------------------------------------------------------------------------


def test_password_file_relative_to_config(tmp_path, monkeypatch):
    (tmp_path / "ari.secret").write_text("s3cret\n")
    monkeypatch.setenv("SENTINELLE_ARI_PASSWORD", "from-env")  # the file wins over the env
    config = load_config(str(write(tmp_path, SCHEMA + '\n[ari]\npassword_file = "ari.secret"\n')))
    assert config.ari.password == "s3cret"


def test_password_file_absolute(tmp_path):
    secret = tmp_path / "abs.secret"
    secret.write_text("abs\n")
    sub = tmp_path / "conf"
    sub.mkdir()
    config = load_config(str(write(sub, SCHEMA + f'\n[ari]\npassword_file = "{secret}"\n')))
    assert config.ari.password == "abs"


def test_password_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTINELLE_ARI_PASSWORD", "from-env")
    assert load_config(str(write(tmp_path, SCHEMA))).ari.password == "from-env"
    assert load_config(str(write(tmp_path, SCHEMA + '\n[ari]\npassword = "inline"\n'))).ari.password \
        == "from-env"


def test_password_inline_when_nothing_else(tmp_path):
    assert load_config(str(write(tmp_path, SCHEMA + '\n[ari]\npassword = "inline"\n'))).ari.password \
        == "inline"
    assert load_config(str(write(tmp_path, SCHEMA))).ari.password == ""


# --- regimes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "regime"),
    [
        (date(2020, 1, 1), Regime.FR_2023),  # before any known regime: the earliest, not none
        (date(2023, 3, 1), Regime.FR_2023),
        (date(2026, 8, 10), Regime.FR_2023),
        (date(2026, 8, 11), Regime.FR_2026),
        (date(2030, 1, 1), Regime.FR_2026),
    ],
)
def test_regime_for_dates(day, regime):
    assert regime_for(day) is regime
    assert Policy().regime_on(day) is regime


def test_pinned_regime():
    assert Policy(regime="fr-2026").regime_on(date(2024, 1, 1)) is Regime.FR_2026
    assert Policy(regime="fr-2023").regime_on(date(2027, 1, 1)) is Regime.FR_2023


def test_press_is_prospecting_service_b2b_are_not():
    """Press is exempt from the gate only (R-10/R-11); hours and frequency apply."""
    assert Purpose.PRESS.is_consumer_prospecting and Purpose.PROSPECTING.is_consumer_prospecting
    assert not Purpose.SERVICE.is_consumer_prospecting and not Purpose.B2B.is_consumer_prospecting


# -- error wording (issue: errors an admin reads) ------------------------------

def test_bad_enum_value_lists_the_allowed_values_not_python_reprs():
    with pytest.raises(ConfigError) as err:
        parse_config({"professionals": {"p": {}},
                      "campaigns": {"c": {"professional": "p", "dialing": "automatic"}}})
    text = str(err.value)
    assert "must be one of automated, manual; got 'automatic'" in text
    assert "<" not in text and "Dialing." not in text


def test_errors_that_are_not_about_a_key_do_not_say_config_key(tmp_path):
    config = parse_config({"professionals": {"p": {}}, "campaigns": {"promo": {"professional": "p"}}})
    with pytest.raises(ConfigError) as err:
        config.campaign("promoo")
    assert str(err.value) == "unknown campaign 'promoo': not configured (known: promo)"
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / "missing.toml"))
    assert str(err.value) == f"config file {tmp_path / 'missing.toml'}: no such file"
    bad = tmp_path / "bad.toml"
    bad.write_text("[store\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(bad))
    assert str(err.value).startswith(f"config file {bad}: invalid TOML")
    assert "config key" not in str(err.value)


def test_each_default_is_the_dataclass_field():
    """An empty file gives exactly the dataclasses' defaults: the parser
    writes no default of its own that could drift from them."""
    from sentinelle.config import AriConfig, MetricsConfig, ServerConfig, StoreConfig

    config = parse_config({})
    assert config.policy == Policy()
    assert config.server == ServerConfig()
    assert config.ari == AriConfig()
    assert config.metrics == MetricsConfig()
    assert config.store.busy_timeout_ms == StoreConfig().busy_timeout_ms
    assert config.store.synchronous == StoreConfig().synchronous


# --- a campaign declares its sector ------------------------------------------------------


def test_campaign_sector_defaults_to_other_and_loads_every_value(tmp_path):
    assert load_config(str(write(tmp_path, SCHEMA))).campaign("promo").sector is Sector.OTHER
    for sector in ("energy-renovation", "home-adaptation", "other"):
        c = parse_config(merged(f'[campaigns.promo]\nsector = "{sector}"'), base_dir=tmp_path)
        assert c.campaign("promo").sector is Sector(sector)
    # RULES.md R-13: these two sectors are banned outright, the neutral default is not.
    assert {s for s in Sector if s.is_banned} == {Sector.ENERGY_RENOVATION, Sector.HOME_ADAPTATION}


@pytest.mark.parametrize("value", ['"energy"', '"Energy-Renovation"', '"solar panels"', "1", "true"])
def test_campaign_sector_is_validated(tmp_path, value):
    with pytest.raises(ConfigError) as err:
        parse_config(merged(f"[campaigns.promo]\nsector = {value}"), base_dir=tmp_path)
    assert err.value.key == "campaigns.promo.sector"
