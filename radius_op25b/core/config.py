"""Configuration as frozen, typed objects first and a TOML file second (DESIGN §5).

`load_config(path)` parses the file with stdlib `tomllib`; every error names the file and key.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radius_op25b.core.decision import FilterClass, IPNetwork, Settings
from radius_op25b.core.profiles import BUILTIN_PROFILES, CustomProfile, FilterNames
from radius_op25b.errors import ConfigError

DEFAULT_CONFIG_PATH = "op25b.toml"
DEFAULT_DATABASE_URL = "sqlite:///op25b.db"


class Secret:
    """A shared secret that never shows itself in repr, str, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ClientConfig:
    name: str
    network: IPNetwork
    secret: Secret
    profile: str = "generic"
    require_message_authenticator: bool = True
    limit_proxy_state: bool = True
    enforce: bool = True
    managed_attributes: str = "replace"  # or "keep-upstream"
    coa_port: int = 3799
    coa_address: str | None = None
    coa_secret: Secret | None = None


@dataclass(frozen=True)
class UpstreamConfig:
    name: str
    address: str
    secret: Secret
    auth_port: int = 1812
    acct_port: int = 1813
    require_message_authenticator: bool = False
    response_window: float = 5.0  # no reply within this: try the next server, mark this one zombie
    zombie_period: float = 10.0  # a zombie that stays silent this long is dead
    status_interval: float = 1.0  # Status-Server probes of a zombie (dead ones: 5x this)


@dataclass(frozen=True)
class PoolConfig:
    name: str
    upstreams: tuple[str, ...]
    strategy: str = "fail-over"  # or "load-balance"


@dataclass(frozen=True)
class RouteConfig:
    realm: str
    pool: str


@dataclass(frozen=True)
class Config:
    path: str = DEFAULT_CONFIG_PATH
    database_url: str = DEFAULT_DATABASE_URL
    auth_listen: tuple[str, int] = ("0.0.0.0", 1812)
    acct_listen: tuple[str, int] = ("0.0.0.0", 1813)
    auth_budget: float = 10.0  # how long an Access-Request is retried across upstreams
    acct_budget: float = 30.0  # the same for Accounting-Requests (RFC 5080 §2.2.1: until acked)
    policy: Settings = Settings()
    filters: FilterNames = FilterNames()
    clients: tuple[ClientConfig, ...] = ()
    upstreams: tuple[UpstreamConfig, ...] = ()
    pools: tuple[PoolConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    profiles: Mapping[str, CustomProfile] = field(default_factory=dict)
    metrics_listen: tuple[str, int] | None = None
    spool_dir: str = "op25b-spool"  # accounting records wait here until the database has them
    spool_max_bytes: int = 1 << 30

    def client(self, name: str) -> ClientConfig | None:
        return next((c for c in self.clients if c.name == name), None)


# --- parsing -----------------------------------------------------------------------------------


class _Reader:
    """Reads one TOML table, naming `file: key` in every error."""

    def __init__(self, file: str, prefix: str, table: Mapping[str, Any]) -> None:
        self.file, self.prefix, self.table = file, prefix, table

    def where(self, key: str) -> str:
        return f"{self.file}: {self.prefix}{key}"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.table:
            if required:
                raise self.error(key, "is required")
            return default
        value = self.table[key]
        # bool is an int in Python; a port written as `true` is still wrong.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            names = " or ".join(t.__name__ for t in _as_tuple(kind))
            raise self.error(key, f"must be a {names}, not {type(value).__name__}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    def port(self, key: str, default: int) -> int:
        value = self.get(key, int, default)
        if not 1 <= value <= 65535:
            raise self.error(key, f"port {value} is outside 1-65535")
        return int(value)

    def listen(self, key: str, default: tuple[str, int]) -> tuple[str, int]:
        value = self.get(key, str)
        if value is None:
            return default
        return parse_host_port(value, lambda msg: self.error(key, msg))

    def secret(self, required: bool = True, stem: str = "secret") -> Secret | None:
        given = [k for k in (stem, f"{stem}_file", f"{stem}_env") if k in self.table]
        if len(given) > 1:
            raise self.error(given[1], f"give only one of {', '.join(given)}")
        if not given:
            if required:
                raise self.error(stem, f"is required (or {stem}_file, {stem}_env)")
            return None
        key = given[0]
        raw = self.get(key, str)
        if key == stem:
            value = raw
        elif key.endswith("_env"):
            if raw not in os.environ:
                raise self.error(key, f"variable {raw} is not set")
            value = os.environ[raw]
        else:
            path = Path(raw)
            if not path.is_absolute():
                path = Path(self.file).resolve().parent / path
            try:
                value = path.read_text().strip("\r\n")
            except OSError as exc:
                raise self.error(key, f"cannot read {path}: {exc.strerror}") from None
        if not value:
            raise self.error(key, "the secret is empty")
        return Secret(value.encode())


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def parse_host_port(text: str, error: Any) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise error(f"{text!r} is not HOST:PORT")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise error(f"{host!r} is not an IP address") from None
    if not 0 <= int(port) <= 65535:
        raise error(f"port {port} is outside 0-65535")
    return host, int(port)


def _network(reader: _Reader, key: str, text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise reader.error(key, f"{text!r} is not an IP address or CIDR") from None


def _filter_class(reader: _Reader, key: str, default: FilterClass) -> FilterClass:
    return FilterClass(reader.choice(key, tuple(c.value for c in FilterClass), default.value))


def _tables(file: str, data: Mapping[str, Any], key: str) -> list[_Reader]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise ConfigError(f"{file}: {key}: must be an array of tables ([[{key}]])")
    return [_Reader(file, f"{key}[{i}].", t) for i, t in enumerate(items)]


def _templates(r: _Reader, key: str) -> tuple[tuple[str, str], ...]:
    items = r.get(key, list, [])
    out = []
    for i, item in enumerate(items):
        name, eq, value = str(item).partition("=")
        if not eq or not name.strip():
            raise r.error(f"{key}[{i}]", f"{item!r} is not 'Attribute-Name = value'")
        out.append((name.strip(), value.strip().strip('"')))
    return tuple(out)


def parse_config(data: Mapping[str, Any], file: str = DEFAULT_CONFIG_PATH) -> Config:
    """Build a Config from parsed TOML; `file` only names the source in errors."""
    known = {"database", "server", "policy", "filters", "clients", "upstreams", "pools", "routes", "profiles", "metrics", "accounting"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{file}: {key}: unknown section (known: {', '.join(sorted(known))})")

    db = _Reader(file, "database.", data.get("database", {}))
    database_url = os.environ.get("OP25B_DATABASE_URL") or _relative_sqlite(file, db.get("url", str, DEFAULT_DATABASE_URL))

    server = _Reader(file, "server.", data.get("server", {}))
    auth_listen = server.listen("auth_listen", ("0.0.0.0", 1812))
    acct_listen = server.listen("acct_listen", ("0.0.0.0", 1813))
    auth_budget = _positive(server, "max_request_time", 10.0)
    acct_budget = _positive(server, "max_accounting_time", 30.0)

    pol = _Reader(file, "policy.", data.get("policy", {}))
    pools_text = pol.get("static_pools", list, [])
    policy = Settings(
        default_class=_filter_class(pol, "default_class", FilterClass.FULL),
        static_pools=tuple(_network(pol, f"static_pools[{i}]", str(p)) for i, p in enumerate(pools_text)),
        on_database_error=pol.choice("on_database_error", ("default", "none"), "default"),
    )

    flt = _Reader(file, "filters.", data.get("filters", {}))
    filters = FilterNames(
        full=flt.get("full", str, "OP25B-FULL"),
        mobile=flt.get("mobile", str, "OP25B-MOBILE"),
        nokia_full_id=flt.get("nokia_full_id", int, 2501),
        nokia_mobile_id=flt.get("nokia_mobile_id", int, 2502),
    )

    profiles: dict[str, CustomProfile] = {}
    for r in _tables(file, data, "profiles"):
        name = r.get("name", str, required=True)
        if name in BUILTIN_PROFILES or name in profiles:
            raise r.error("name", f"profile {name!r} is already defined")
        remove = _templates(r, "remove") if "remove" in r.table else None
        profiles[name] = CustomProfile(
            name=name,
            full=_templates(r, "full"),
            mobile=_templates(r, "mobile"),
            change=r.choice("change", ("coa", "disconnect"), "disconnect"),
            nak_fallback=r.get("nak_fallback", bool, True),
            remove=remove,
        )
    _check_template_attributes(file, profiles)

    clients = []
    for r in _tables(file, data, "clients"):
        profile = r.get("profile", str, "generic")
        if profile not in BUILTIN_PROFILES and profile not in profiles:
            choices = ", ".join([*BUILTIN_PROFILES, *profiles])
            raise r.error("profile", f"unknown profile {profile!r} (known: {choices})")
        coa_address = r.get("coa_address", str)
        if coa_address is not None:
            _network(r, "coa_address", coa_address)
        clients.append(
            ClientConfig(
                name=r.get("name", str, required=True),
                network=_network(r, "address", r.get("address", str, required=True)),
                secret=r.secret(),  # type: ignore[arg-type]
                profile=profile,
                require_message_authenticator=r.get("require_message_authenticator", bool, True),
                limit_proxy_state=r.get("limit_proxy_state", bool, True),
                enforce=r.get("enforce", bool, True),
                managed_attributes=r.choice("managed_attributes", ("replace", "keep-upstream"), "replace"),
                coa_port=r.port("coa_port", 3799),
                coa_address=coa_address,
                coa_secret=r.secret(required=False, stem="coa_secret"),
            )
        )

    upstreams = []
    for r in _tables(file, data, "upstreams"):
        address = r.get("address", str, required=True)
        _network(r, "address", address)
        window = _positive(r, "response_window", 5.0)
        upstreams.append(
            UpstreamConfig(
                name=r.get("name", str, required=True),
                address=address,
                secret=r.secret(),  # type: ignore[arg-type]
                auth_port=r.port("auth_port", 1812),
                acct_port=r.port("acct_port", 1813),
                require_message_authenticator=r.get("require_message_authenticator", bool, False),
                response_window=window,
                zombie_period=_positive(r, "zombie_period", 10.0),
                status_interval=_positive(r, "status_interval", 1.0),
            )
        )
    _unique(file, "clients", [c.name for c in clients])
    upstream_names = _unique(file, "upstreams", [u.name for u in upstreams])

    pools = []
    for r in _tables(file, data, "pools"):
        members = tuple(r.get("upstreams", list, required=True))
        for i, m in enumerate(members):
            if m not in upstream_names:
                raise r.error(f"upstreams[{i}]", f"no upstream named {m!r}")
        if not members:
            raise r.error("upstreams", "a pool needs at least one upstream")
        pools.append(PoolConfig(r.get("name", str, required=True), members, r.choice("strategy", ("fail-over", "load-balance"), "fail-over")))
    pool_names = _unique(file, "pools", [p.name for p in pools])

    routes = []
    for r in _tables(file, data, "routes"):
        pool = r.get("pool", str, required=True)
        if pool not in pool_names:
            raise r.error("pool", f"no pool named {pool!r}")
        routes.append(RouteConfig(r.get("realm", str, required=True).lower(), pool))

    metrics = _Reader(file, "metrics.", data.get("metrics", {}))
    acct = _Reader(file, "accounting.", data.get("accounting", {}))
    spool_dir = Path(acct.get("spool_dir", str, "op25b-spool"))
    if not spool_dir.is_absolute():
        spool_dir = Path(file).resolve().parent / spool_dir
    spool_mb = acct.get("spool_max_mb", int, 1024)
    if spool_mb < 1:
        raise acct.error("spool_max_mb", "must be at least 1")
    return Config(
        path=file,
        database_url=database_url,
        auth_listen=auth_listen,
        acct_listen=acct_listen,
        auth_budget=auth_budget,
        acct_budget=acct_budget,
        policy=policy,
        filters=filters,
        clients=tuple(clients),
        upstreams=tuple(upstreams),
        pools=tuple(pools),
        routes=tuple(routes),
        profiles=profiles,
        metrics_listen=metrics.listen("listen", None) if "listen" in metrics.table else None,  # type: ignore[arg-type]
        spool_dir=str(spool_dir),
        spool_max_bytes=spool_mb << 20,
    )


def _positive(r: _Reader, key: str, default: float) -> float:
    value = r.get(key, (int, float), default)
    if value <= 0:
        raise r.error(key, f"must be a positive number of seconds, not {value}")
    return float(value)


def _relative_sqlite(file: str, url: str) -> str:
    """A relative SQLite path in the file means: next to the config file, not the working dir."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(Path(file).resolve().parent / url[len(prefix) :])
    return url


def _unique(file: str, section: str, names: list[str]) -> set[str]:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"{file}: {section}[{i}].name: {name!r} is used twice")
        seen.add(name)
    return seen


def _check_template_attributes(file: str, profiles: Mapping[str, CustomProfile]) -> None:
    if not profiles:
        return
    from radius_op25b.radius.dictionary import load_dictionary

    dictionary = load_dictionary()
    for i, p in enumerate(profiles.values()):
        for attr, _ in p.full + p.mobile + (p.remove or ()):
            if attr not in dictionary.attributes:
                raise ConfigError(f"{file}: profiles[{i}]: attribute {attr!r} is not in the dictionary")


def config_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get("OP25B_CONFIG") or DEFAULT_CONFIG_PATH


def load_config(path: str | None = None) -> Config:
    """Read and check the TOML config; a missing file gives the defaults only if none was named."""
    file = config_path(path)
    try:
        with open(file, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file (run `op25b init` to write an example)") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_config(data, file)
