"""Configuration: one TOML file turned into frozen, validated objects.

Why frozen dataclasses: the rules are pure functions of (call, policy, history,
time); a policy that cannot change under them keeps decisions reproducible
from the decision log. Every key is validated at load time so a typo in a
compliance setting stops the service with a message naming the key (exit 2)
instead of silently falling back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import MISSING, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sentinelle.core.model import Campaign, Disposition, Policy, Professional, Regime

CONFIG_ENV = "SENTINELLE_CONFIG"
DEFAULT_CONFIG_NAME = "sentinelle.toml"
DEFAULT_STORE = "sentinelle.db"


class ConfigError(ValueError):
    """A config problem, naming what to fix: the offending key when there is
    one, else the file or the option (`subject`), worded for what it is."""

    def __init__(self, key: str, message: str, *, subject: str | None = None) -> None:
        super().__init__(f"{subject}: {message}" if subject else f"config key '{key}': {message}")
        self.key = key


def listen_host(listen: str) -> str:
    """The host of a HOST:PORT setting (IPv6 in brackets allowed)."""
    return listen.rsplit(":", 1)[0].strip("[]")


def listen_port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:4573"
    allow: tuple[str, ...] = ()
    request_timeout_s: float = 2.0
    header_timeout_s: float = 2.0
    max_connections: int = 256
    # FastAGI processes sharing the port (SO_REUSEPORT); more than one needs
    # PostgreSQL (SQLite serialises its writers: more processes only queue).
    workers: int = 1
    # Read by `serve --check-config` to spot dialplan/feature conflicts, when readable.
    asterisk_etc: str = "/etc/asterisk"

    @property
    def host(self) -> str:
        return listen_host(self.listen)

    @property
    def port(self) -> int:
        return listen_port(self.listen)


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


# A dialer's own disposition codes -> sentinelle's (VICIdial's default
# statuses). Only codes that carry a legal effect or a call's outcome are
# listed; any other code is accepted and ignored. `[http.dispo_map]` replaces
# this table: it is not merged, so an admin sees the whole mapping in one place.
DEFAULT_DISPO_MAP: Mapping[str, Disposition] = {
    "DNC": Disposition.DO_NOT_CALL,
    "NI": Disposition.REFUSED,
    "DEC": Disposition.REFUSED,
    "CALLBK": Disposition.CALLBACK,
}

# What an HTTP API client may be allowed to do (`[http] tokens_file`).
HTTP_SCOPES = frozenset({"consents:write", "refusals:write", "check:read", "scrub"})


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: str = ""  # e.g. "127.0.0.1:4580"; empty: no HTTP API
    allow: tuple[str, ...] = ()  # client networks; required for a non-loopback listen
    tokens_file: str = ""  # one client a line: NAME SCOPE[,SCOPE...] TOKEN
    dispo_map: Mapping[str, Disposition] = field(default_factory=lambda: dict(DEFAULT_DISPO_MAP))

    @property
    def host(self) -> str:
        return listen_host(self.listen)

    @property
    def port(self) -> int:
        return listen_port(self.listen)


@dataclass(frozen=True, slots=True)
class ApiClient:
    """One HTTP API client: its name goes into the decision log and the
    facts it records (`http:<name>`); the token never leaves this object."""

    name: str
    scopes: frozenset[str]
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = DEFAULT_STORE
    # postgresql://user@host:5432/db: one store shared by several PBXs (empty:
    # the SQLite file at `path`). libpq options (sslmode=...) pass through.
    url: str = ""
    password_file: str = ""  # else libpq's PGPASSWORD / ~/.pgpass; never in the URL
    pool_size: int = 4  # PostgreSQL connections per process
    busy_timeout_ms: int = 1500
    synchronous: str = "normal"  # "full" survives power loss at a latency cost

    @property
    def where(self) -> str:
        """The store, for messages: the file, or the URL (it holds no password)."""
        return self.url or self.path


@dataclass(frozen=True, slots=True)
class Config:
    store: StoreConfig = StoreConfig()
    policy: Policy = field(default_factory=Policy)
    professionals: Mapping[str, Professional] = field(default_factory=dict)
    campaigns: Mapping[str, Campaign] = field(default_factory=dict)
    server: ServerConfig = ServerConfig()
    ari: AriConfig = AriConfig()
    metrics: MetricsConfig = MetricsConfig()
    source: str = "<built-in defaults>"
    http: HttpConfig = field(default_factory=HttpConfig)

    def campaign(self, name: str | None) -> Campaign:
        """Resolve a campaign name; without one, the only campaign configured."""
        if name is None:
            if len(self.campaigns) == 1:
                return next(iter(self.campaigns.values()))
            raise ConfigError(
                "campaigns",
                f"{len(self.campaigns)} campaigns configured: name one with --campaign",
                subject="no campaign given",
            )
        try:
            return self.campaigns[name]
        except KeyError:
            known = ", ".join(sorted(self.campaigns)) or "none"
            raise ConfigError(f"campaigns.{name}", f"not configured (known: {known})",
                              subject=f"unknown campaign {name!r}") from None

    def professional_of(self, campaign: Campaign) -> Professional:
        return self.professionals[campaign.professional]


# Built-in defaults: one professional and one prospecting campaign, so that a
# fresh install answers `sentinelle check` without any file.
DEFAULT_PROFESSIONAL = "default"
DEFAULT_CAMPAIGN = "default"


def default_config() -> Config:
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
    found = read_config(explicit)
    return default_config() if found is None else parse_config(*found)


def read_config(explicit: str | None = None) -> tuple[_Table, Path, str] | None:
    """(the TOML's tables, its directory, its path) for `parse_config`, or
    None when no file is found (the defaults). Apart from parsing so that
    the classic AGI can find its store, and the start-up cache beside it,
    before the campaigns' caller IDs are read."""
    path = find_config(explicit)
    if path is None:
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("--config", "no such file", subject=f"config file {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"invalid TOML: {exc}", subject=f"config file {path}") from None
    return raw, path.parent, str(path)


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
        allowed = ", ".join(sorted(str(c) for c in choices))
        raise ConfigError(f"{prefix}.{key}", f"must be one of {allowed}; got {value!r}")
    return str(value)


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
    from sentinelle.core.numbers import NumberError, parse_caller_id  # local: numbers is heavier to import

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
    return str(inline)


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
    tokens = mode(config.http.tokens_file) if config.http.tokens_file else None
    if tokens is not None and tokens & (stat.S_IROTH | stat.S_IWOTH):
        out.append(f"HTTP tokens file {config.http.tokens_file} is world-readable: chmod 600 "
                   "(owned by the service user)")
    return out


# The closed sets of string settings that are not enums of the model.
_CHOICES: dict[str, set[str]] = {
    "store.synchronous": {"normal", "full"},
    "policy.regime": {"auto", *(r.value for r in Regime)},
    "policy.foreign": {"block", "allow"},
}


def _section(table: _Table, prefix: str, cls: type[Any], *, extra: AbstractSet[str] = frozenset(),
             skip: AbstractSet[str] = frozenset()) -> dict[str, Any]:
    """Read the keys of one table that map to fields of `cls`.

    A missing key is simply not passed, so its default is the dataclass
    field's: each default is written once, in the dataclass. The expected
    type is the default's type; an enum field accepts its values only."""
    names = [f.name for f in fields(cls) if f.name not in skip and f.default is not MISSING]
    _check_keys(table, prefix, set(names) | extra)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in names or f.name not in table:
            continue
        key, default = f"{prefix}.{f.name}", f.default
        if isinstance(default, StrEnum):
            kind = type(default)
            values[f.name] = kind(_choice(table, prefix, f.name, {m.value for m in kind}, default))
        elif key in _CHOICES:
            values[f.name] = _choice(table, prefix, f.name, _CHOICES[key], str(default))
        elif isinstance(default, tuple):
            values[f.name] = _strings(table, prefix, f.name)
        elif isinstance(default, frozenset):
            values[f.name] = _numbers(table, prefix, f.name)
        else:
            values[f.name] = _get(table, prefix, f.name, type(default), default)
    return values


def store_at(url: str, password_file: str = "") -> StoreConfig:
    """The store a URL names (`sqlite:///PATH` or `postgresql://...`), with
    the other settings at their defaults: for commands that take a store on
    their command line (`sentinelle store copy`)."""
    store = _store_url(StoreConfig(url=url, password_file=password_file), Path.cwd())
    if not store.url and not url.startswith("sqlite:///"):
        raise ConfigError("store.url", "is empty")
    return store


def _store_url(store: StoreConfig, base_dir: Path) -> StoreConfig:
    """`store.url`: PostgreSQL for several PBXs, or `sqlite:///PATH` (the same
    as `store.path`). A password in the URL is refused: the config file is
    read by people and tools that must not learn it."""
    url = store.url.strip()
    if not url:
        return store
    if url.startswith("sqlite:///"):
        return replace(store, url="", path=url[len("sqlite://"):])
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("store.url", f"must be postgresql://USER@HOST:PORT/DB or sqlite:///PATH,"
                          f" got {url.split('://')[0]!r}://...")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError("store.url", f"not a valid URL: {exc}") from None
    if parts.password is not None:
        raise ConfigError("store.url", "holds a password: put it in store.password_file "
                          "(mode 600) or PGPASSWORD, not in the URL")
    if not parts.path.strip("/"):
        raise ConfigError("store.url", "names no database (postgresql://USER@HOST:PORT/DB)")
    return replace(store, url=url)


def parse_store(raw: _Table, base_dir: Path = Path(".")) -> StoreConfig:
    """The [store] section alone, paths made absolute against `base_dir`."""
    store = StoreConfig(**_section(_table(raw, "store"), "store", StoreConfig))
    store = _store_url(store, base_dir)
    if store.path != ":memory:" and not Path(store.path).is_absolute():
        store = replace(store, path=str(base_dir / store.path))
    if store.password_file and not Path(store.password_file).is_absolute():
        store = replace(store, password_file=str(base_dir / store.password_file))
    if store.pool_size < 1:
        raise ConfigError("store.pool_size", f"must be >= 1, got {store.pool_size!r}")
    if store.busy_timeout_ms < 0:
        raise ConfigError("store.busy_timeout_ms", f"must be >= 0, got {store.busy_timeout_ms!r}")
    return store


def parse_config(raw: _Table, base_dir: Path = Path("."), source: str = "<dict>") -> Config:
    _check_keys(raw, "<top>", {"store", "policy", "professionals", "campaigns", "server", "ari",
                               "metrics", "http"})
    store = parse_store(raw, base_dir)
    policy = Policy(**_section(_table(raw, "policy"), "policy", Policy))
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
        professionals[name] = Professional(name, **_section(table, prefix, Professional))

    campaigns: dict[str, Campaign] = {}
    for name, table in _table(raw, "campaigns").items():
        prefix = f"campaigns.{name}"
        if not isinstance(table, dict):
            raise ConfigError(prefix, "must be a table")
        values = _section(table, prefix, Campaign, extra={"professional"})
        if "professional" not in table:
            raise ConfigError(f"{prefix}.professional", "required: every campaign maps to a professional")
        pro = _get(table, prefix, "professional", str, "")
        if pro not in professionals:
            raise ConfigError(f"{prefix}.professional", f"unknown professional {pro!r}")
        campaigns[name] = Campaign(name, pro, **values)
    if not campaigns:
        defaults = default_config()
        professionals = professionals or dict(defaults.professionals)
        if DEFAULT_PROFESSIONAL not in professionals:
            raise ConfigError("campaigns", "at least one campaign is required")
        campaigns = dict(defaults.campaigns)

    server = ServerConfig(**_section(_table(raw, "server"), "server", ServerConfig))
    if (":" not in server.listen or not server.listen.rsplit(":", 1)[1].isdigit()
            or int(server.listen.rsplit(":", 1)[1]) > 65535):
        raise ConfigError("server.listen", f"must be HOST:PORT, got {server.listen!r}")
    if not 1 <= server.workers <= 64:
        raise ConfigError("server.workers", f"must be 1..64, got {server.workers!r}")
    if server.workers > 1 and not store.url:
        raise ConfigError("server.workers", "more than 1 needs a PostgreSQL store (store.url):"
                          " SQLite serialises its writers, extra processes would only queue")
    for key in ("request_timeout_s", "header_timeout_s", "max_connections"):
        _positive(getattr(server, key), f"server.{key}")

    ar = _table(raw, "ari")
    ari = AriConfig(
        **_section(ar, "ari", AriConfig, skip={"password", "password_file", "secret_in_config"},
                   extra={"password", "password_file"}),
        password=_read_secret(ar, base_dir),
        password_file=_secret_path(ar, base_dir),
        secret_in_config=bool(ar.get("password")) or _url_has_password(ar.get("url", "")),
    )
    _positive(ari.dtmf_gap_s, "ari.dtmf_gap_s")
    metrics = MetricsConfig(**_section(_table(raw, "metrics"), "metrics", MetricsConfig))
    if metrics.listen:
        host, _, port = metrics.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError("metrics.listen", f"must be HOST:PORT, got {metrics.listen!r}")
    return Config(store, policy, professionals, campaigns, server, ari, metrics, source,
                  _http(_table(raw, "http"), base_dir))


def _http(table: _Table, base_dir: Path) -> HttpConfig:
    values = _section(table, "http", HttpConfig, extra={"dispo_map"})
    if values.get("listen"):
        host, _, port = values["listen"].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError("http.listen", f"must be HOST:PORT, got {values['listen']!r}")
    if values.get("tokens_file") and not Path(values["tokens_file"]).is_absolute():
        values["tokens_file"] = str(base_dir / values["tokens_file"])
    if "dispo_map" in table:
        mapping = _table(table, "dispo_map")
        allowed = {d.value for d in Disposition}
        dispo: dict[str, Disposition] = {}
        for code, target in mapping.items():
            if not isinstance(target, str) or target not in allowed:
                raise ConfigError(f"http.dispo_map.{code}",
                                  f"must be one of {', '.join(sorted(allowed))}; got {target!r}")
            dispo[code] = Disposition(target)
        values["dispo_map"] = dispo
    return HttpConfig(**values)


_CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_.~+/=-]{32,256}$")


def read_tokens(path: str) -> tuple[ApiClient, ...]:
    """The HTTP API clients of `[http] tokens_file`: one a line, `NAME
    SCOPE[,SCOPE...] TOKEN`, `#` comments. Errors name the line, never the
    token: a config error is printed and logged, a token must be neither."""
    where = f"http.tokens_file ({path})"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigError("http.tokens_file", f"cannot read {path}: {why}") from None
    clients: list[ApiClient] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ConfigError("http.tokens_file", f"line {lineno}: expected NAME SCOPES TOKEN",
                              subject=where)
        name, scopes_text, token = parts
        if not _CLIENT_NAME.match(name):
            raise ConfigError("http.tokens_file", f"line {lineno}: client name must be 1-64 "
                              "letters, digits, '_', '.' or '-'", subject=where)
        scopes = frozenset(scopes_text.split(","))
        unknown = scopes - HTTP_SCOPES
        if unknown:
            raise ConfigError("http.tokens_file", f"line {lineno}: unknown scope(s) "
                              f"{', '.join(sorted(unknown))} (allowed: {', '.join(sorted(HTTP_SCOPES))})",
                              subject=where)
        if not _TOKEN.match(token):
            raise ConfigError("http.tokens_file", f"line {lineno}: a token is 32-256 characters "
                              "of A-Z a-z 0-9 _ . ~ + / = - (e.g. `openssl rand -hex 32`)",
                              subject=where)
        if any(c.name == name for c in clients):
            raise ConfigError("http.tokens_file", f"line {lineno}: client {name!r} listed twice",
                              subject=where)
        if any(c.token == token for c in clients):
            raise ConfigError("http.tokens_file", f"line {lineno}: this token is already "
                              "another client's", subject=where)
        clients.append(ApiClient(name, scopes, token))
    if not clients:
        raise ConfigError("http.tokens_file", "no client listed: nobody could use the API",
                          subject=where)
    return tuple(clients)


# -- what `serve` and `listen` need beyond a well-formed file -----------------

_DTMF = re.compile(r"^[0-9*#A-D]{1,16}$")
_APP = re.compile(r"^[A-Za-z0-9_.-]+$")


def validate_for_serving(config: Config) -> None:
    """Refuse an exposed listener without an allow list: a FastAGI port open
    to the network would let anyone probe the lists and burn attempts."""
    host = config.server.host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not config.server.allow:
        raise ConfigError("server.allow", f"listen address {config.server.listen} is not loopback: "
                                          "list the PBX addresses allowed to connect")
    for entry in config.server.allow:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError("server.allow", f"not an address or network: {entry!r}") from None
    if config.ari.url:
        validate_for_listening(config)
    if config.http.listen:
        validate_http(config)


def validate_http(config: Config) -> tuple[ApiClient, ...]:
    """The HTTP API records consents and refusals: exposed without an allow
    list, or without tokens, anyone on the network could write the evidence.
    Returns the clients of the tokens file (read here, so that `serve
    --check-config` catches a bad file before the service starts)."""
    http = config.http
    try:
        loopback = ipaddress.ip_address(http.host).is_loopback
    except ValueError:
        loopback = http.host == "localhost"
    if not loopback and not http.allow:
        raise ConfigError("http.allow", f"listen address {http.listen} is not loopback: "
                                        "list the client networks allowed to connect")
    for entry in http.allow:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError("http.allow", f"not an address or network: {entry!r}") from None
    if not http.tokens_file:
        raise ConfigError("http.tokens_file", "required with http.listen: every client needs a "
                                              "token")
    return read_tokens(http.tokens_file)


def validate_for_listening(config: Config) -> None:
    """Refuse an ARI config the listener cannot honour (exit 2 at start-up):
    a listener that silently never connects loses every refusal."""
    ari = config.ari
    if not ari.url:
        raise ConfigError("ari.url", "empty: the ARI listener is disabled")
    if not _DTMF.match(ari.refusal_dtmf):
        raise ConfigError("ari.refusal_dtmf",
                          f"must be 1-16 DTMF digits (0-9 * # A-D), got {ari.refusal_dtmf!r}")
    if ari.dtmf_gap_s <= 0:
        raise ConfigError("ari.dtmf_gap_s", f"must be > 0, got {ari.dtmf_gap_s!r}")
    if not ari.user:
        raise ConfigError("ari.user", "required with ari.url")
    if not ari.app or not _APP.match(ari.app):
        raise ConfigError("ari.app", f"must be a plain name, got {ari.app!r}")
    try:
        parts = urlsplit(ari.url.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError("ari.url", "must be http(s)://host[:port][/ari]")

