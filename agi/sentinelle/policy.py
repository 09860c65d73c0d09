"""Configuration: one TOML file turned into frozen, validated objects.

Why frozen dataclasses: the rules are pure functions of (call, policy, history,
time); a policy that cannot change under them keeps decisions reproducible
from the decision log. Every key is validated at load time so a typo in a
compliance setting stops the service with a message naming the key (exit 2)
instead of silently falling back to a default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

CONFIG_ENV = "SENTINELLE_CONFIG"
DEFAULT_CONFIG_NAME = "sentinelle.toml"
DEFAULT_STORE = "sentinelle.db"


class ConfigError(ValueError):
    """A config problem, always naming the offending key so admins can fix it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key '{key}': {message}")
        self.key = key


class Purpose(StrEnum):
    PROSPECTING = "prospecting"
    SERVICE = "service"
    PRESS = "press"
    B2B = "b2b"

    @property
    def is_consumer_prospecting(self) -> bool:
        """`press` is still prospecting (hours, frequency, refusal apply); it
        is only exempt from the Bloctel / consent gate (R-10, R-11)."""
        return self in (Purpose.PROSPECTING, Purpose.PRESS)


class Sector(StrEnum):
    """What a campaign sells, for R-13 (values named after RULES.md's wording).

    Telephone prospecting for energy-renovation work or equipment (loi
    2020-901) and for home-adaptation work (loi 2025-594) is forbidden
    outright, whatever the consent. `other` is the neutral default: any sector
    the law does not ban.
    """

    ENERGY_RENOVATION = "energy-renovation"
    HOME_ADAPTATION = "home-adaptation"
    OTHER = "other"

    @property
    def is_banned(self) -> bool:
        return self in (Sector.ENERGY_RENOVATION, Sector.HOME_ADAPTATION)


class Dialing(StrEnum):
    AUTOMATED = "automated"
    MANUAL = "manual"


class Regime(StrEnum):
    FR_2023 = "fr-2023"
    FR_2026 = "fr-2026"


# The date a regime starts is data (RULES.md "Regimes"): kept here, in order.
REGIME_STARTS: tuple[tuple[Regime, date], ...] = (
    (Regime.FR_2023, date(2023, 3, 1)),
    (Regime.FR_2026, date(2026, 8, 11)),
)


def regime_for(day: date) -> Regime:
    """The regime in force on `day` (a Europe/Paris calendar date).

    Dates before the first known regime get the earliest one: an older
    regime is never more permissive than fr-2023 for our purposes.
    """
    current = REGIME_STARTS[0][0]
    for regime, start in REGIME_STARTS:
        if day >= start:
            current = regime
    return current


@dataclass(frozen=True, slots=True)
class Professional:
    """The company on whose behalf calls are made: limits are counted per
    professional, not per campaign (RULES.md "Scope")."""

    name: str
    caller_ids: frozenset[str] = frozenset()  # E.164, operator-authorised (R-42 manual)
    technical_caller_ids: frozenset[str] = frozenset()  # explicit R-43 authorisations


@dataclass(frozen=True, slots=True)
class Campaign:
    name: str
    professional: str
    purpose: Purpose = Purpose.PROSPECTING
    dialing: Dialing = Dialing.AUTOMATED
    fail_open: bool = False  # on internal error: closed (block) unless the admin opts out
    sector: Sector = Sector.OTHER  # banned sectors block every prospecting call


@dataclass(frozen=True, slots=True)
class Policy:
    regime: str = "auto"  # "auto" or a Regime value
    consent_max_age_days: int = 365  # R-11, unverified 2026 decree: cautious default
    foreign: str = "block"
    outside_prefix: str = ""  # outside-line prefix stripped from dialled numbers
    cautious_alsace: bool = True  # unknown department -> also Alsace-Moselle days
    bloctel_max_age_days: int = 30  # R-10 staleness
    retention_days: int = 3 * 365  # evidence retention

    def regime_on(self, day: date) -> Regime:
        return regime_for(day) if self.regime == "auto" else Regime(self.regime)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:4573"
    allow: tuple[str, ...] = ()
    request_timeout_s: float = 2.0
    header_timeout_s: float = 2.0
    max_connections: int = 256

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str = ""  # e.g. "127.0.0.1:9573"; empty: no metrics endpoint


@dataclass(frozen=True, slots=True)
class AriConfig:
    url: str = ""  # empty: listener disabled
    user: str = ""
    password: str = field(default="", repr=False)
    app: str = "sentinelle"
    refusal_dtmf: str = "*9"
    dtmf_gap_s: float = 3.0
    password_file: str = ""  # where the password was read from (permission check)
    secret_in_config: bool = False  # `password` or user:password@ in `url`, inline in the file


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = DEFAULT_STORE
    busy_timeout_ms: int = 1500
    synchronous: str = "normal"  # "full" survives power loss at a latency cost


@dataclass(frozen=True, slots=True)
class Config:
    store: StoreConfig = StoreConfig()
    policy: Policy = Policy()
    professionals: Mapping[str, Professional] = field(default_factory=dict)
    campaigns: Mapping[str, Campaign] = field(default_factory=dict)
    server: ServerConfig = ServerConfig()
    ari: AriConfig = AriConfig()
    metrics: MetricsConfig = MetricsConfig()
    source: str = "<built-in defaults>"

    def campaign(self, name: str | None) -> Campaign:
        """Resolve a campaign name; without one, the only campaign configured."""
        if name is None:
            if len(self.campaigns) == 1:
                return next(iter(self.campaigns.values()))
            raise ConfigError(
                "campaigns",
                f"{len(self.campaigns)} campaigns configured: name one with --campaign",
            )
        try:
            return self.campaigns[name]
        except KeyError:
            known = ", ".join(sorted(self.campaigns)) or "none"
            raise ConfigError(f"campaigns.{name}", f"unknown campaign (known: {known})") from None

    def professional_of(self, campaign: Campaign) -> Professional:
        return self.professionals[campaign.professional]


# Built-in defaults: one professional and one prospecting campaign, so that a
# fresh install answers `sentinelle check` without any file.
DEFAULT_PROFESSIONAL = "default"
DEFAULT_CAMPAIGN = "default"


def _defaults() -> Config:
    return Config(
        professionals={DEFAULT_PROFESSIONAL: Professional(DEFAULT_PROFESSIONAL)},
        campaigns={DEFAULT_CAMPAIGN: Campaign(DEFAULT_CAMPAIGN, DEFAULT_PROFESSIONAL)},
    )


def find_config(explicit: str | None) -> Path | None:
    """--config, then $SENTINELLE_CONFIG, then ./sentinelle.toml, else None."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.exists() else None


def load_config(explicit: str | None = None) -> Config:
    path = find_config(explicit)
    if path is None:
        return _defaults()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("--config", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"{path}: invalid TOML: {exc}") from None
    return parse_config(raw, base_dir=path.parent, source=str(path))


# -- validation -------------------------------------------------------------

_Table = dict[str, Any]


def _table(raw: _Table, key: str) -> _Table:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    return value


def _check_keys(table: _Table, prefix: str, allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{prefix}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _get(table: _Table, prefix: str, key: str, kind: type, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{prefix}.{key}", f"must be {kind.__name__}, got {value!r}")
    return value


def _choice(table: _Table, prefix: str, key: str, choices: set[str], default: str) -> str:
    value = _get(table, prefix, key, str, default)
    if value not in choices:
        raise ConfigError(f"{prefix}.{key}", f"must be one of {sorted(choices)}, got {value!r}")
    return value


def _positive(value: int | float, key: str) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be > 0, got {value!r}")


# Day counts above this are typos, and would overflow date arithmetic in the
# rules (an OverflowError on the call path is a SYS-ERROR block on every call).
MAX_DAYS = 100 * 366


def _strings(table: _Table, prefix: str, key: str) -> tuple[str, ...]:
    values = _get(table, prefix, key, list, [])
    for value in values:
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}.{key}", f"entries must be strings, got {value!r}")
    return tuple(values)


def _numbers(table: _Table, prefix: str, key: str) -> frozenset[str]:
    from .numbers import NumberError, parse_caller_id  # local: numbers is heavier to import

    values = _get(table, prefix, key, list, [])
    out = set()
    for value in values:
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}.{key}", f"numbers must be strings, got {value!r}")
        try:
            out.add(parse_caller_id(value).e164)
        except NumberError as exc:
            raise ConfigError(f"{prefix}.{key}", str(exc)) from None
    return frozenset(out)


def _read_secret(ari: _Table, base_dir: Path) -> str:
    """Secrets come from a file or the environment, never required inline."""
    inline = _get(ari, "ari", "password", str, "")  # type-checked even when unused
    if "password_file" in ari:
        path = Path(_get(ari, "ari", "password_file", str, ""))
        path = path if path.is_absolute() else base_dir / path
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError("ari.password_file", f"cannot read {path}: {exc.strerror}") from None
    env = os.environ.get("SENTINELLE_ARI_PASSWORD")
    if env:
        return env
    return inline


def _secret_path(ari: _Table, base_dir: Path) -> str:
    if "password_file" not in ari:
        return ""
    path = Path(str(ari["password_file"]))
    return str(path if path.is_absolute() else base_dir / path)


def _url_has_password(url: object) -> bool:
    from urllib.parse import urlsplit

    try:
        return isinstance(url, str) and bool(urlsplit(url.strip()).password)
    except ValueError:
        return False


def permission_warnings(config: Config) -> list[str]:
    """Files that other local users may read (a secret) or change (the policy:
    `fail_open`, regimes, caller IDs). A config without a secret may be
    world-readable (it usually is, under /etc); a secret file may not."""
    import stat

    def mode(path: str) -> int | None:
        try:
            return os.stat(path).st_mode
        except OSError:
            return None

    out = []
    src = mode(config.source) if not config.source.startswith("<") else None
    if src is not None and src & stat.S_IWOTH:
        out.append(f"config {config.source} is world-writable: any local user can change the "
                   "policy (chmod o-w)")
    if src is not None and src & stat.S_IROTH and config.ari.secret_in_config:
        out.append(f"config {config.source} is world-readable and holds the ARI password: "
                   "move it to ari.password_file (mode 600) or chmod o-r the config")
    secret = mode(config.ari.password_file) if config.ari.password_file else None
    if secret is not None and secret & (stat.S_IROTH | stat.S_IWOTH):
        out.append(f"ARI secret file {config.ari.password_file} is world-readable: chmod 600 "
                   "(owned by the service user)")
    return out


def parse_config(raw: _Table, base_dir: Path = Path("."), source: str = "<dict>") -> Config:
    _check_keys(raw, "<top>", {"store", "policy", "professionals", "campaigns", "server", "ari",
                               "metrics"})

    st = _table(raw, "store")
    _check_keys(st, "store", {"path", "busy_timeout_ms", "synchronous"})
    store_path = _get(st, "store", "path", str, DEFAULT_STORE)
    if store_path != ":memory:" and not Path(store_path).is_absolute():
        store_path = str(base_dir / store_path)
    store = StoreConfig(
        path=store_path,
        busy_timeout_ms=_get(st, "store", "busy_timeout_ms", int, 1500),
        synchronous=_choice(st, "store", "synchronous", {"normal", "full"}, "normal"),
    )
    if store.busy_timeout_ms < 0:
        raise ConfigError("store.busy_timeout_ms", f"must be >= 0, got {store.busy_timeout_ms!r}")

    po = _table(raw, "policy")
    _check_keys(
        po,
        "policy",
        {"regime", "consent_max_age_days", "foreign", "outside_prefix", "cautious_alsace",
         "bloctel_max_age_days", "retention_days"},
    )
    policy = Policy(
        regime=_choice(po, "policy", "regime", {"auto", *Regime}, "auto"),
        consent_max_age_days=_get(po, "policy", "consent_max_age_days", int, 365),
        foreign=_choice(po, "policy", "foreign", {"block", "allow"}, "block"),
        outside_prefix=_get(po, "policy", "outside_prefix", str, ""),
        cautious_alsace=_get(po, "policy", "cautious_alsace", bool, True),
        bloctel_max_age_days=_get(po, "policy", "bloctel_max_age_days", int, 30),
        retention_days=_get(po, "policy", "retention_days", int, 3 * 365),
    )
    for key in ("consent_max_age_days", "bloctel_max_age_days", "retention_days"):
        _positive(getattr(policy, key), f"policy.{key}")
        if getattr(policy, key) > MAX_DAYS:
            raise ConfigError(f"policy.{key}", f"must be <= {MAX_DAYS} days, got {getattr(policy, key)!r}")
    if policy.outside_prefix and not policy.outside_prefix.isdigit():
        raise ConfigError("policy.outside_prefix", "must be digits")

    professionals: dict[str, Professional] = {}
    for name, table in _table(raw, "professionals").items():
        prefix = f"professionals.{name}"
        if not isinstance(table, dict):
            raise ConfigError(prefix, "must be a table")
        _check_keys(table, prefix, {"caller_ids", "technical_caller_ids"})
        professionals[name] = Professional(
            name,
            caller_ids=_numbers(table, prefix, "caller_ids"),
            technical_caller_ids=_numbers(table, prefix, "technical_caller_ids"),
        )

    campaigns: dict[str, Campaign] = {}
    for name, table in _table(raw, "campaigns").items():
        prefix = f"campaigns.{name}"
        if not isinstance(table, dict):
            raise ConfigError(prefix, "must be a table")
        _check_keys(table, prefix, {"professional", "purpose", "dialing", "fail_open", "sector"})
        if "professional" not in table:
            raise ConfigError(f"{prefix}.professional", "required: every campaign maps to a professional")
        pro = _get(table, prefix, "professional", str, "")
        if pro not in professionals:
            raise ConfigError(f"{prefix}.professional", f"unknown professional {pro!r}")
        campaigns[name] = Campaign(
            name,
            pro,
            purpose=Purpose(_choice(table, prefix, "purpose", set(Purpose), "prospecting")),
            dialing=Dialing(_choice(table, prefix, "dialing", set(Dialing), "automated")),
            fail_open=_get(table, prefix, "fail_open", bool, False),
            sector=Sector(_choice(table, prefix, "sector", set(Sector), Sector.OTHER.value)),
        )
    if not campaigns:
        defaults = _defaults()
        professionals = professionals or dict(defaults.professionals)
        if DEFAULT_PROFESSIONAL not in professionals:
            raise ConfigError("campaigns", "at least one campaign is required")
        campaigns = dict(defaults.campaigns)

    sv = _table(raw, "server")
    _check_keys(sv, "server", {"listen", "allow", "request_timeout_s", "header_timeout_s",
                               "max_connections"})
    server = ServerConfig(
        listen=_get(sv, "server", "listen", str, "127.0.0.1:4573"),
        allow=_strings(sv, "server", "allow"),
        request_timeout_s=_get(sv, "server", "request_timeout_s", float, 2.0),
        header_timeout_s=_get(sv, "server", "header_timeout_s", float, 2.0),
        max_connections=_get(sv, "server", "max_connections", int, 256),
    )
    if (":" not in server.listen or not server.listen.rsplit(":", 1)[1].isdigit()
            or int(server.listen.rsplit(":", 1)[1]) > 65535):
        raise ConfigError("server.listen", f"must be HOST:PORT, got {server.listen!r}")
    for key in ("request_timeout_s", "header_timeout_s", "max_connections"):
        _positive(getattr(server, key), f"server.{key}")

    ar = _table(raw, "ari")
    _check_keys(ar, "ari", {"url", "user", "password", "password_file", "app", "refusal_dtmf",
                            "dtmf_gap_s"})
    ari = AriConfig(
        url=_get(ar, "ari", "url", str, ""),
        user=_get(ar, "ari", "user", str, ""),
        password=_read_secret(ar, base_dir),
        app=_get(ar, "ari", "app", str, "sentinelle"),
        refusal_dtmf=_get(ar, "ari", "refusal_dtmf", str, "*9"),
        dtmf_gap_s=_get(ar, "ari", "dtmf_gap_s", float, 3.0),
        password_file=_secret_path(ar, base_dir),
        secret_in_config=bool(ar.get("password")) or _url_has_password(ar.get("url", "")),
    )
    _positive(ari.dtmf_gap_s, "ari.dtmf_gap_s")
    me = _table(raw, "metrics")
    _check_keys(me, "metrics", {"listen"})
    metrics = MetricsConfig(listen=_get(me, "metrics", "listen", str, ""))
    if metrics.listen:
        host, _, port = metrics.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError("metrics.listen", f"must be HOST:PORT, got {metrics.listen!r}")
    return Config(store, policy, professionals, campaigns, server, ari, metrics, source)
