"""Configuration as frozen, typed objects first and a TOML file second (DESIGN §5).

`load_config(path)` parses the file with stdlib `tomllib`; every error names the file and key.
`SCHEMA` declares every table and key the file may hold: any other key is an error that names
the nearest known one. Parsing records where each secret comes from (the literal, the file, the
variable) without reading it, so commands that never send RADIUS work for a user who may not
read the NAS secrets; `resolve_secrets(config)` reads them, for `op25b serve`.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from radius_op25b.core.decision import FilterClass, IPNetwork, Settings
from radius_op25b.core.inputs import parse_duration
from radius_op25b.core.profiles import BUILTIN_PROFILES, CustomProfile, FilterNames
from radius_op25b.errors import ConfigError, InvalidInput

DEFAULT_CONFIG_PATH = "op25b.toml"
DEFAULT_DATABASE_URL = "sqlite:///op25b.db"


@dataclass(frozen=True)
class SecretSource:
    """Where a secret that is not written in the file comes from: `kind` "file" (an absolute
    path, resolved against the config file's folder) or "env" (a variable name); `where` is the
    `file: table.key` that names it in errors."""

    kind: str
    ref: str
    where: str

    def read(self) -> bytes:
        """Read the secret (the one place that does); ConfigError naming file and key."""
        if self.kind == "env":
            if self.ref not in os.environ:
                raise ConfigError(f"{self.where}: variable {self.ref} is not set")
            value = os.environ[self.ref]
        else:
            try:
                value = Path(self.ref).read_text().strip("\r\n")
            except OSError as exc:
                raise ConfigError(f"{self.where}: cannot read {self.ref}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{self.where}: the secret is empty")
        return value.encode()


class Secret:
    """A shared secret that never shows itself in repr, str, logs or error messages.

    Either a value (written in the file, or read by `resolve_secrets`) or only a `source` not
    read yet; `reveal()` on the latter is a programming error (RuntimeError)."""

    __slots__ = ("_value", "source")

    def __init__(self, value: bytes | None = None, source: SecretSource | None = None) -> None:
        if value is None and source is None:
            raise ValueError("a Secret needs a value or a source")
        self._value = value
        self.source = source

    @property
    def resolved(self) -> bool:
        return self._value is not None

    def reveal(self) -> bytes:
        if self._value is None:
            where = self.source.where if self.source else "?"
            raise RuntimeError(f"secret {where} was not read: call resolve_secrets(config) before sending RADIUS")
        return self._value

    def resolve(self) -> Secret:
        """This secret with its value read from its source (itself when it has one)."""
        if self._value is not None or self.source is None:
            return self
        return Secret(self.source.read(), self.source)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value is not None else "Secret(<not read>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return False
        if self._value is None or other._value is None:
            return self._value is other._value and self.source == other.source
        return other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value if self._value is not None else self.source)


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
    transport: str = "udp"  # or "radsec" (RFC 6614): matched on the RadSec listener only
    certificate_name: str | None = None  # RadSec: a name the client certificate must carry


@dataclass(frozen=True)
class TlsConfig:
    """[tls], or one upstream's own: the RadSec identity and the CA peers are verified against.
    Paths are absolute (resolved against the config file's folder)."""

    certificate_file: str | None = None
    private_key_file: str | None = None
    ca_file: str | None = None
    radius_v11: str = "allow"  # RFC 9765 by ALPN: "allow" | "require" | "off"

    @property
    def complete(self) -> bool:
        return bool(self.certificate_file and self.private_key_file and self.ca_file)


RADSEC_SECRET = b"radsec"  # RFC 6614 §2.3: the shared secret over TLS, unless configured


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
    transport: str = "udp"  # or "radsec": one long-lived TLS connection to radsec_port
    radsec_port: int = 2083
    certificate_name: str | None = None  # RadSec: the name its certificate must carry (default: address)
    tls: TlsConfig | None = None  # RadSec: its own identity/CA; None = [tls]
    keepalive: float = 30.0  # RadSec: Status-Server on a connection idle this long (RFC 6614 §2.6)


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
class WebConfig:
    """[web]: `op25b web`, the support desk's pages and HTTP API."""

    listen: tuple[str, int] = ("127.0.0.1", 8080)
    trusted_user_header: str | None = None  # a carrier's SSO reverse proxy names the user here
    trusted_proxies: tuple[IPNetwork, ...] = ()  # ... and is believed only from these addresses
    tls_certificate: str | None = None
    tls_key: str | None = None
    # Plugin deployments (deploy/freeradius-plugin/), where no `op25b serve` runs: this process
    # sends the CoA/Disconnect-Requests of live changes. Off, so that a desk beside `serve` does not.
    push_changes: bool = False


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
    source_address: str | None = None  # None: the auth listener's address (proxy/server.py)
    spool_dir: str = "op25b-spool"  # accounting records wait here until the database has them
    spool_max_bytes: int = 1 << 30
    max_exemption: timedelta | None = None  # policy.max_exemption: the longest exemption an agent may grant
    dynamic_pools: tuple[IPNetwork, ...] = ()  # policy.dynamic_pools: for acl report and export dynamic-ranges
    web: WebConfig = WebConfig()
    radsec_listen: tuple[str, int] | None = None  # RFC 6614 listener; off by default
    radsec_idle_timeout: float = 300.0  # a NAS connection silent this long is closed
    radsec_max_connections: int = 8  # open RadSec connections per client
    tls: TlsConfig = TlsConfig()

    def client(self, name: str) -> ClientConfig | None:
        return next((c for c in self.clients if c.name == name), None)


# --- the schema ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # what the value is, as README.md says it
    default: str = ""  # the default as text; "" when required or without one


@dataclass(frozen=True)
class Table:
    name: str
    keys: tuple[Key, ...]
    array: bool = False  # [[name]]: an array of tables

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)


def _secret_keys(stem: str, what: str) -> tuple[Key, ...]:
    return (
        Key(stem, f"{what} (string)"),
        Key(f"{stem}_file", f"{what}: file holding it, relative to the config file"),
        Key(f"{stem}_env", f"{what}: environment variable holding it"),
    )


#: Every table of the file and its known keys (README.md "Configuration"); parse_config reads
#: only these and refuses any other.
SCHEMA: Mapping[str, Table] = {
    t.name: t
    for t in (
        Table("database", (Key("url", "SQLAlchemy URL (env OP25B_DATABASE_URL overrides)", DEFAULT_DATABASE_URL),)),
        Table(
            "server",
            (
                Key("auth_listen", "HOST:PORT", "0.0.0.0:1812"),
                Key("acct_listen", "HOST:PORT", "0.0.0.0:1813"),
                Key("max_request_time", "seconds", "10"),
                Key("max_accounting_time", "seconds", "30"),
                Key("source_address", "IP requests to upstreams and NASes are sent from", "the auth listener's"),
                Key("radsec_listen", "HOST:PORT of the RadSec (RFC 6614) listener", "off"),
                Key("radsec_idle_timeout", "seconds: a RadSec connection silent this long is closed", "300"),
                Key("radsec_max_connections", "open RadSec connections per client", "8"),
            ),
        ),
        Table(
            "policy",
            (
                Key("default_class", "full | mobile | none", "full"),
                Key("on_database_error", "default | none", "default"),
                Key("static_pools", "list of CIDRs", "[]"),
                Key("dynamic_pools", "list of CIDRs: the dynamic address blocks (acl report, export dynamic-ranges)", "[]"),
                Key("max_exemption", "duration (90m, 12h, 30d, 2w): the longest exemption; also forbids --permanent", "no cap"),
            ),
        ),
        Table(
            "filters",
            (
                Key("full", "filter name", "OP25B-FULL"),
                Key("mobile", "filter name", "OP25B-MOBILE"),
                Key("nokia_full_id", "SR OS filter id", "2501"),
                Key("nokia_mobile_id", "SR OS filter id", "2502"),
            ),
        ),
        Table(
            "tls",
            (
                Key("certificate_file", "PEM certificate (chain) of op25b, relative to the config file", "off"),
                Key("private_key_file", "PEM private key of it", "off"),
                Key("ca_file", "PEM CA(s) peer certificates are verified against", "off"),
                Key("radius_v11", "allow | require | off: RADIUS/1.1 (RFC 9765) by ALPN", "allow"),
            ),
        ),
        Table("metrics", (Key("listen", "HOST:PORT of the Prometheus endpoint", "off"),)),
        Table(
            "web",
            (
                Key("listen", "HOST:PORT of `op25b web`", "127.0.0.1:8080"),
                Key("trusted_user_header", "HTTP header naming the signed-in user (a carrier's SSO proxy)", "off"),
                Key("trusted_proxies", "list of IPs/CIDRs the header is believed from", "[]"),
                Key("tls_certificate", "PEM file, relative to the config file: serve HTTPS", "off"),
                Key("tls_key", "PEM file of its private key", "off"),
                Key(
                    "push_changes",
                    "true: send CoA/Disconnect for live changes from op25b web (plugin deployments, no serve)",
                    "false",
                ),
            ),
        ),
        Table(
            "accounting",
            (
                Key("spool_dir", "folder, relative to the config file", "op25b-spool"),
                Key("spool_max_mb", "MiB", "1024"),
            ),
        ),
        Table(
            "clients",
            (
                Key("name", "string"),
                Key("address", "IP or CIDR"),
                *_secret_keys("secret", "shared secret"),
                Key("profile", "NAS profile", "generic"),
                Key("require_message_authenticator", "bool", "true"),
                Key("limit_proxy_state", "bool", "true"),
                Key("enforce", "bool", "true"),
                Key("managed_attributes", "replace | keep-upstream", "replace"),
                Key("coa_port", "port", "3799"),
                Key("coa_address", "IP", "the accounting source"),
                *_secret_keys("coa_secret", "CoA secret"),
                Key("transport", "udp | radsec", "udp"),
                Key("certificate_name", "RadSec: DNS name, IP or CN the client certificate must carry", "any"),
            ),
            array=True,
        ),
        Table(
            "upstreams",
            (
                Key("name", "string"),
                Key("address", "IP"),
                *_secret_keys("secret", "shared secret"),
                Key("auth_port", "port", "1812"),
                Key("acct_port", "port", "1813"),
                Key("require_message_authenticator", "bool", "false"),
                Key("response_window", "seconds", "5"),
                Key("zombie_period", "seconds", "10"),
                Key("status_interval", "seconds", "1"),
                Key("transport", "udp | radsec", "udp"),
                Key("radsec_port", "port", "2083"),
                Key("certificate_name", "RadSec: the name its server certificate must carry", "address"),
                Key("certificate_file", "RadSec: own certificate for this upstream", "[tls]"),
                Key("private_key_file", "RadSec: its private key", "[tls]"),
                Key("ca_file", "RadSec: CA to verify this upstream against", "[tls]"),
                Key("keepalive", "seconds: Status-Server on an idle RadSec connection", "30"),
            ),
            array=True,
        ),
        Table(
            "pools",
            (
                Key("name", "string"),
                Key("strategy", "fail-over | load-balance", "fail-over"),
                Key("upstreams", "list of upstream names"),
            ),
            array=True,
        ),
        Table("routes", (Key("realm", "realm"), Key("pool", "pool name")), array=True),
        Table(
            "profiles",
            (
                Key("name", "string"),
                Key("change", "coa | disconnect", "disconnect"),
                Key("nak_fallback", "bool", "true"),
                Key("full", "list of 'Attribute = template'", "[]"),
                Key("mobile", "list of 'Attribute = template'", "[]"),
                Key("remove", "list of 'Attribute = template'"),
            ),
            array=True,
        ),
    )
}


def _hint(name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"


def check_schema(data: Mapping[str, Any], file: str = DEFAULT_CONFIG_PATH) -> None:
    """Every table and key of `data` is in SCHEMA; else a ConfigError naming file, table, key."""
    for section, value in data.items():
        table = SCHEMA.get(section)
        if table is None:
            raise ConfigError(f"{file}: {section}: unknown section ({_hint(section, tuple(SCHEMA))})")
        if table.array:
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raise ConfigError(f"{file}: {section}: must be an array of tables ([[{section}]])")
            items = [(f"{section}[{i}]", t) for i, t in enumerate(value)]
        else:
            if not isinstance(value, dict):
                raise ConfigError(f"{file}: {section}: must be a table ([{section}])")
            items = [(section, value)]
        for where, item in items:
            for key in item:
                if key not in table.key_names:
                    raise ConfigError(f"{file}: {where}: unknown key {key!r} ({_hint(key, table.key_names)})")


# --- parsing -----------------------------------------------------------------------------------


class _Reader:
    """Reads one TOML table, naming `file: key` in every error."""

    def __init__(self, file: str, prefix: str, table: Mapping[str, Any], schema: Table) -> None:
        self.file, self.prefix, self.table, self.schema = file, prefix, table, schema

    def where(self, key: str) -> str:
        return f"{self.file}: {self.prefix}{key}"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.schema.key_names:  # a key read here is missing from SCHEMA
            raise AssertionError(f"{self.schema.name}.{key} is not in config.SCHEMA")
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
            if not raw:
                raise self.error(key, "the secret is empty")
            return Secret(raw.encode())
        if key.endswith("_env"):
            return Secret(source=SecretSource("env", raw, self.where(key)))
        path = Path(raw)
        if not path.is_absolute():
            path = Path(self.file).resolve().parent / path
        return Secret(source=SecretSource("file", str(path), self.where(key)))  # read by resolve_secrets


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
    return [_Reader(file, f"{key}[{i}].", t, SCHEMA[key]) for i, t in enumerate(items)]


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
    check_schema(data, file)

    def table(name: str) -> _Reader:
        return _Reader(file, f"{name}.", data.get(name, {}), SCHEMA[name])

    db = table("database")
    database_url = os.environ.get("OP25B_DATABASE_URL") or _relative_sqlite(file, db.get("url", str, DEFAULT_DATABASE_URL))

    server = table("server")
    auth_listen = server.listen("auth_listen", ("0.0.0.0", 1812))
    acct_listen = server.listen("acct_listen", ("0.0.0.0", 1813))
    auth_budget = _positive(server, "max_request_time", 10.0)
    acct_budget = _positive(server, "max_accounting_time", 30.0)
    source_address = server.get("source_address", str, None)
    if source_address is not None:
        try:
            source_address = str(ipaddress.ip_address(source_address))
        except ValueError:
            raise server.error("source_address", f"{source_address!r} is not an IP address") from None

    tls_table = table("tls")
    tls = TlsConfig(
        _path(tls_table, "certificate_file"),
        _path(tls_table, "private_key_file"),
        _path(tls_table, "ca_file"),
        tls_table.choice("radius_v11", ("allow", "require", "off"), "allow"),
    )
    radsec_listen = server.listen("radsec_listen", ("", 0)) if "radsec_listen" in server.table else None
    if radsec_listen is not None and not tls.complete:
        raise server.error("radsec_listen", "needs [tls] certificate_file, private_key_file and ca_file")
    radsec_max = server.get("radsec_max_connections", int, 8)
    if radsec_max < 1:
        raise server.error("radsec_max_connections", "must be at least 1")

    pol = table("policy")
    max_exemption = None
    if "max_exemption" in pol.table:
        try:
            max_exemption = parse_duration(pol.get("max_exemption", str))
        except InvalidInput as exc:
            raise pol.error("max_exemption", str(exc)) from None
    pools_text = pol.get("static_pools", list, [])
    policy = Settings(
        default_class=_filter_class(pol, "default_class", FilterClass.FULL),
        static_pools=tuple(_network(pol, f"static_pools[{i}]", str(p)) for i, p in enumerate(pools_text)),
        on_database_error=pol.choice("on_database_error", ("default", "none"), "default"),
    )

    flt = table("filters")
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
        transport = r.choice("transport", TRANSPORTS, "udp")
        secret = r.secret(required=transport != "radsec") or Secret(RADSEC_SECRET)  # RFC 6614 §2.3
        clients.append(
            ClientConfig(
                name=r.get("name", str, required=True),
                network=_network(r, "address", r.get("address", str, required=True)),
                secret=secret,
                profile=profile,
                require_message_authenticator=r.get("require_message_authenticator", bool, True),
                limit_proxy_state=r.get("limit_proxy_state", bool, True),
                enforce=r.get("enforce", bool, True),
                managed_attributes=r.choice("managed_attributes", ("replace", "keep-upstream"), "replace"),
                coa_port=r.port("coa_port", 3799),
                coa_address=coa_address,
                coa_secret=r.secret(required=False, stem="coa_secret"),
                transport=transport,
                certificate_name=r.get("certificate_name", str, None),
            )
        )

    upstreams = []
    for r in _tables(file, data, "upstreams"):
        address = r.get("address", str, required=True)
        _network(r, "address", address)
        window = _positive(r, "response_window", 5.0)
        transport = r.choice("transport", TRANSPORTS, "udp")
        own_tls = None
        if any(k in r.table for k in ("certificate_file", "private_key_file", "ca_file")):
            own_tls = TlsConfig(
                _path(r, "certificate_file") or tls.certificate_file,
                _path(r, "private_key_file") or tls.private_key_file,
                _path(r, "ca_file") or tls.ca_file,
                tls.radius_v11,
            )
        if transport == "radsec" and not (own_tls or tls).complete:
            raise r.error("transport", "radsec needs [tls] certificate_file, private_key_file and ca_file")
        upstreams.append(
            UpstreamConfig(
                name=r.get("name", str, required=True),
                address=address,
                secret=r.secret(required=transport != "radsec") or Secret(RADSEC_SECRET),  # RFC 6614 §2.3
                auth_port=r.port("auth_port", 1812),
                acct_port=r.port("acct_port", 1813),
                require_message_authenticator=r.get("require_message_authenticator", bool, False),
                response_window=window,
                zombie_period=_positive(r, "zombie_period", 10.0),
                status_interval=_positive(r, "status_interval", 1.0),
                transport=transport,
                radsec_port=r.port("radsec_port", 2083),
                certificate_name=r.get("certificate_name", str, None),
                tls=own_tls,
                keepalive=_positive(r, "keepalive", 30.0),
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
        pools.append(
            PoolConfig(
                r.get("name", str, required=True), members, r.choice("strategy", ("fail-over", "load-balance"), "fail-over")
            )
        )
    pool_names = _unique(file, "pools", [p.name for p in pools])

    routes = []
    for r in _tables(file, data, "routes"):
        pool = r.get("pool", str, required=True)
        if pool not in pool_names:
            raise r.error("pool", f"no pool named {pool!r}")
        routes.append(RouteConfig(r.get("realm", str, required=True).lower(), pool))

    metrics = table("metrics")
    web = table("web")
    header = web.get("trusted_user_header", str, None)
    proxies = tuple(_network(web, f"trusted_proxies[{i}]", str(p)) for i, p in enumerate(web.get("trusted_proxies", list, [])))
    if header is not None and not proxies:
        raise web.error("trusted_user_header", "needs trusted_proxies: the header would be believed from anyone")
    cert, key = web.get("tls_certificate", str, None), web.get("tls_key", str, None)
    if (cert is None) != (key is None):
        raise web.error("tls_certificate" if cert is None else "tls_key", "give both tls_certificate and tls_key")
    here = Path(file).resolve().parent
    web_config = WebConfig(
        listen=web.listen("listen", ("127.0.0.1", 8080)),
        trusted_user_header=header,
        trusted_proxies=proxies,
        tls_certificate=str(here / cert) if cert else None,
        tls_key=str(here / key) if key else None,
        push_changes=web.get("push_changes", bool, False),
    )
    acct = table("accounting")
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
        source_address=source_address,
        auth_budget=auth_budget,
        acct_budget=acct_budget,
        policy=policy,
        max_exemption=max_exemption,
        dynamic_pools=tuple(
            _network(pol, f"dynamic_pools[{i}]", str(p)) for i, p in enumerate(pol.get("dynamic_pools", list, []))
        ),
        filters=filters,
        clients=tuple(clients),
        upstreams=tuple(upstreams),
        pools=tuple(pools),
        routes=tuple(routes),
        profiles=profiles,
        metrics_listen=metrics.listen("listen", None) if "listen" in metrics.table else None,  # type: ignore[arg-type]
        web=web_config,
        spool_dir=str(spool_dir),
        spool_max_bytes=spool_mb << 20,
        radsec_listen=radsec_listen,
        radsec_idle_timeout=_positive(server, "radsec_idle_timeout", 300.0),
        radsec_max_connections=radsec_max,
        tls=tls,
    )


TRANSPORTS = ("udp", "radsec")


def _path(r: _Reader, key: str) -> str | None:
    """A file named in the config: relative to the config file's folder."""
    value = r.get(key, str, None)
    if value is None:
        return None
    path = Path(value)
    return str(path if path.is_absolute() else Path(r.file).resolve().parent / path)


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
    except (ValueError, UnicodeError):  # a NUL byte or an unencodable character in the path
        raise ConfigError(f"{file!r}: not a usable file name") from None
    return parse_config(data, file)


def resolve_secrets(config: Config) -> Config:
    """`config` with every client, CoA and upstream secret read from its file or variable: what
    a command that sends RADIUS (`op25b serve`) calls. ConfigError names the file and key."""

    clients = tuple(
        replace(c, secret=c.secret.resolve(), coa_secret=c.coa_secret.resolve() if c.coa_secret else None) for c in config.clients
    )
    upstreams = tuple(replace(u, secret=u.secret.resolve()) for u in config.upstreams)
    return replace(config, clients=clients, upstreams=upstreams)
