"""RadSec (RADIUS over TLS, RFC 6614) on asyncio's streams: the listener NASes connect to, and
one long-lived connection to each upstream with `transport = "radsec"`. Framing and RADIUS/1.1
(RFC 9765) are radius_op25b.radius.stream; the relay does the rest as for UDP.

Every way a NAS connection ends has one named outcome, counted in
op25b_radsec_closed{side="nas",cause}:

    no certificate / other CA / bad TLS ... handshake fails       handshake_failed
    source not a RadSec client ............ closed                unknown_client
    more open connections than allowed .... closed                too_many_connections
    certificate without the configured name closed                certificate_name
    no common RADIUS version (ALPN) ....... closed                version
    Length below 20 or above 4096 ......... closed (that one)     bad_length
    silent for radsec_idle_timeout ........ closed                idle
    the NAS closed it ..................... -                     closed_by_peer

A CoA or Disconnect for a session of a RadSec NAS goes over that NAS's newest open connection
(services/push.py's tunnel; RADIUS/1.1 ones too); its ACK or NAK comes back on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from radius_op25b.core.clients import ClientTable
from radius_op25b.core.config import ClientConfig, Config, TlsConfig, UpstreamConfig
from radius_op25b.errors import ConfigError, MalformedPacket
from radius_op25b.logs import RateLimitedLog
from radius_op25b.proxy.relay import Relay
from radius_op25b.radius import COA_ACK, COA_NAK, DISCONNECT_ACK, DISCONNECT_NAK
from radius_op25b.radius.stream import (
    STREAM_HEADER,
    V11,
    VersionRefused,
    alpn_offer,
    negotiated_version,
    stream_packet_length,
)
from radius_op25b.services.push import PushWorker

log = logging.getLogger("op25b.radsec")

HANDSHAKE_TIMEOUT = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0

CONNECTIONS = Gauge(
    "op25b_radsec_connections",
    "Open RadSec connections by side (nas or upstream), peer and RADIUS version",
    ["side", "peer", "version"],
    multiprocess_mode="livesum",
)
CLOSED = Counter("op25b_radsec_closed", "RadSec connections closed or refused, by cause", ["side", "cause"])
_handshake_log = RateLimitedLog(log)


class _CountedHandshake(ssl.SSLObject):
    """The event loop ends a failed handshake itself (and logs it only in debug mode): this
    is where the listener learns of it, to count and log it."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            CLOSED.labels("nas", "handshake_failed").inc()
            _handshake_log.warning("radsec_handshake", "RadSec handshake failed: %s", exc.reason or exc)
            raise


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """The listener's TLS: TLS 1.2 or later, a client certificate from `ca_file` required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.sslobject_class = _CountedHandshake
    # RFC 6614 §2.3 asked for TLS 1.1 or later; BCP 195 (RFC 9325) asks for 1.2 at least.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # RFC 6614 §2.3: mutual authentication, so the client presents a certificate too.
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load(ctx, tls)
    return ctx


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """Towards an upstream: our certificate, and theirs verified against `ca_file` and name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, tls)
    return ctx


def _load(ctx: ssl.SSLContext, tls: TlsConfig) -> None:
    try:
        ctx.load_cert_chain(tls.certificate_file or "", tls.private_key_file or "")
        ctx.load_verify_locations(tls.ca_file or "")
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls: cannot load {tls.certificate_file}, {tls.private_key_file} or {tls.ca_file}: {exc}") from None
    offer = alpn_offer(tls.radius_v11)
    if offer:
        # RFC 9765 (ALPN configuration): "radius/1.1" and "radius/1.0" by ALPN (RFC 7301); with none, 1.0.
        ctx.set_alpn_protocols(offer)


def certificate_names(cert: dict[str, Any] | None) -> set[str]:
    """The names a peer certificate carries: subjectAltName DNS and IP entries, and the CN."""
    if not cert:
        return set()
    names = {value.lower() for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")}
    for rdn in cert.get("subject", ()):
        names.update(value.lower() for key, value in rdn if key == "commonName")
    return names


class _Stream:
    """One TLS connection as the relay sees it: a `sendto` that writes to the stream."""

    def __init__(self, writer: asyncio.StreamWriter, version: str) -> None:
        self.writer, self.version = writer, version
        self.last_sent = 0.0

    def sendto(self, data: bytes, addr: Any = None, /) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


async def _read_packet(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """The next whole packet; MalformedPacket for a bad Length, IncompleteReadError at EOF."""
    header = await asyncio.wait_for(reader.readexactly(STREAM_HEADER), timeout)
    length = stream_packet_length(header)  # RFC 6613 §2.6.4: a bad one closes the connection
    # The rest of a packet started must come soon: a half-sent one is not an idle connection.
    return header + await asyncio.wait_for(reader.readexactly(length - STREAM_HEADER), HANDSHAKE_TIMEOUT)


class RadSecListener:
    """`server.radsec_listen`: NASes with `transport = "radsec"` connect here."""

    def __init__(self, relay: Relay, config: Config, reuse_port: bool = False) -> None:
        self.relay = relay
        self.reuse_port = reuse_port  # --workers: every worker listens on the same port
        self.server: asyncio.Server | None = None
        self.open: Tally[str] = Tally()
        self.connections: set[asyncio.StreamWriter] = set()
        self.streams: dict[str, list[_Stream]] = {}  # client name -> open connections, oldest first
        self.pusher: PushWorker | None = None
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Config and certificates anew for new connections; open ones keep what they have.

        The listening socket keeps its context: loading the new files into it changes what
        the next handshakes use (OpenSSL copies them into each new connection).
        """
        fresh = server_context(config.tls)  # ConfigError before anything changes
        if getattr(self, "context", None) is None:
            self.context = fresh
        else:
            _load(self.context, config.tls)
        self.config = config
        self.clients = ClientTable(c for c in config.clients if c.transport == "radsec")

    def tunnel_for(self, client: ClientConfig) -> tuple[Callable[[bytes], None], bool] | None:
        """The newest open connection of `client`, for a CoA or Disconnect: (its writer,
        whether it speaks RADIUS/1.1)."""
        for stream in reversed(self.streams.get(client.name, ())):
            if not stream.writer.is_closing():
                return stream.sendto, stream.version == V11
        return None

    def carry_push(self, pusher: PushWorker) -> None:
        """CoA and Disconnect for RadSec NASes go over their connections (a CoA tunnel)."""
        self.pusher = pusher
        pusher.tunnel = self.tunnel_for

    async def start(self) -> None:
        assert self.config.radsec_listen is not None
        host, port = self.config.radsec_listen
        try:
            # The loop does the handshake (ssl=): upgrading a plain stream later would race the
            # ClientHello into the plain reader's buffer.
            self.server = await asyncio.start_server(
                self._serve,
                host,
                port,
                ssl=self.context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                reuse_address=True,
                reuse_port=self.reuse_port or None,
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} (radsec_listen): {exc.strerror}") from None
        log.info(
            "RadSec on %s:%d; %d RadSec client(s)", host, port, sum(1 for c in self.config.clients if c.transport == "radsec")
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.connections):
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()

    def _refuse(self, cause: str, peer: tuple[str, int], detail: str = "") -> None:
        CLOSED.labels("nas", cause).inc()
        self.relay.limited.warning(
            f"radsec_{cause}",
            "RadSec connection from %s:%d closed: %s%s",
            peer[0],
            peer[1],
            cause,
            f" ({detail})" if detail else "",
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[:2]
        self.connections.add(writer)
        try:
            await self._connection(reader, writer, peer)
        except Exception:  # the process never dies on input
            self.relay.limited.exception("radsec_internal", "internal error on the RadSec connection from %s:%d", *peer)
        finally:
            self.connections.discard(writer)
            writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: tuple[str, int]) -> None:
        client = self.clients.lookup(peer[0])
        if client is None:
            return self._refuse("unknown_client", peer)
        if self.open[client.name] >= self.config.radsec_max_connections:
            return self._refuse("too_many_connections", peer, f"{client.name} has {self.open[client.name]} open")
        self.open[client.name] += 1
        try:
            await self._session(reader, writer, peer, client)
        finally:
            self.open[client.name] -= 1

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: tuple[str, int], client: ClientConfig
    ) -> None:
        config = self.config
        ssl_object = writer.get_extra_info("ssl_object")
        if client.certificate_name is not None:
            names = certificate_names(writer.get_extra_info("peercert"))
            if client.certificate_name.lower() not in names:
                return self._refuse("certificate_name", peer, f"wanted {client.certificate_name!r}, got {sorted(names)}")
        try:
            version = negotiated_version(ssl_object.selected_alpn_protocol() if ssl_object else None, config.tls.radius_v11)
        except VersionRefused as exc:
            return self._refuse("version", peer, str(exc))
        stream = _Stream(writer, version)
        self.streams.setdefault(client.name, []).append(stream)
        gauge = CONNECTIONS.labels("nas", client.name, version)
        gauge.inc()
        log.info(
            "RadSec client %s connected from %s:%d (%s, RADIUS/%s)", client.name, peer[0], peer[1], ssl_object.version(), version
        )
        cause = "closed_by_peer"
        try:
            while True:
                try:
                    data = await _read_packet(reader, config.radsec_idle_timeout)
                except MalformedPacket as exc:
                    cause = "bad_length"
                    self._refuse(cause, peer, str(exc))
                    self.relay.hot.drops["malformed"].inc()
                    return
                except TimeoutError:
                    cause = "idle"
                    return
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                if data[0] in _PUSH_ANSWERS and self.pusher is not None:
                    self.pusher.tunnel_reply(data, client.name, version == V11)
                    continue
                self.relay.packet_from_stream(stream, client, version, data, peer)
        finally:
            self.streams[client.name].remove(stream)
            gauge.dec()
            if cause != "bad_length":
                CLOSED.labels("nas", cause).inc()
            log.info("RadSec client %s (%s:%d) disconnected: %s", client.name, peer[0], peer[1], cause)


_PUSH_ANSWERS = frozenset((COA_ACK, COA_NAK, DISCONNECT_ACK, DISCONNECT_NAK))


class UpstreamLink:
    """One upstream's RadSec connection: connect, reconnect with backoff, keepalive."""

    def __init__(self, relay: Relay, upstream: UpstreamConfig, default_tls: TlsConfig) -> None:
        self.relay = relay
        self.name = upstream.name
        self.config = upstream
        self.context = client_context(upstream.tls or default_tls)
        self.mode = (upstream.tls or default_tls).radius_v11
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.version: str | None = None
        self._closing = False

    def reconfigure(self, upstream: UpstreamConfig, default_tls: TlsConfig) -> None:
        """New credentials serve the next connection; the open one stays (SIGHUP)."""
        self.context = client_context(upstream.tls or default_tls)
        self.mode = (upstream.tls or default_tls).radius_v11
        self.config = upstream

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"radsec-{self.name}")

    async def close(self) -> None:
        self._closing = True
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._closing:
            try:
                started = asyncio.get_running_loop().time()
                await self._connect_and_serve()
                # A connection that lived a while earns a quick reconnect, a flapping one not.
                if asyncio.get_running_loop().time() - started > BACKOFF_MAX:
                    backoff = BACKOFF_FIRST
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("RadSec upstream %s: internal error", self.name)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _connect_and_serve(self) -> None:
        config = self.config
        address, port = config.address, config.radsec_port
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    address,
                    port,
                    ssl=self.context,
                    server_hostname=config.certificate_name or address,  # RFC 6614 §2.3: check its identity
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                ),
                HANDSHAKE_TIMEOUT + 1,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            CLOSED.labels("upstream", "connect_failed").inc()
            self.relay.limited.warning(
                f"radsec_connect_{self.name}", "RadSec upstream %s (%s:%d): %s", self.name, address, port, exc
            )
            self.relay.upstream_unreachable(self.name, f"cannot connect: {exc}")
            return
        ssl_object = writer.get_extra_info("ssl_object")
        try:
            version = negotiated_version(ssl_object.selected_alpn_protocol() if ssl_object else None, self.mode)
        except VersionRefused as exc:
            CLOSED.labels("upstream", "version").inc()
            log.warning("RadSec upstream %s: %s; closing", self.name, exc)
            writer.close()
            return
        stream = _Stream(writer, version)
        family = ipaddress.ip_address(address).version
        index = self.relay.add_upstream_transport(stream, family, owner=self.name, version=version)
        self.version = version
        self.connected.set()
        gauge = CONNECTIONS.labels("upstream", self.name, version)
        gauge.inc()
        log.info("RadSec upstream %s connected to %s:%d (%s, RADIUS/%s)", self.name, address, port, ssl_object.version(), version)
        cause = "closed_by_peer"
        try:
            while True:
                try:
                    data = await _read_packet(reader, config.keepalive)
                except TimeoutError:
                    # RFC 6613 §2.6: Status-Server may keep an idle connection alive (and tells
                    # a dead one from a quiet one).
                    upstream = self.relay.router.upstreams.get(self.name) if self.relay.router else None
                    if upstream is not None:
                        self.relay.probe(upstream)
                    continue
                except MalformedPacket as exc:
                    cause = "bad_length"
                    log.warning("RadSec upstream %s sent %s; closing the connection", self.name, exc)
                    return
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                self.relay.datagram_from_upstream(index, data, (address, port))
        finally:
            CLOSED.labels("upstream", cause).inc()
            gauge.dec()
            self.connected.clear()
            self.version = None
            writer.close()
            self.relay.upstream_link_lost(index)
            if not self._closing:
                log.warning("RadSec upstream %s disconnected (%s); reconnecting", self.name, cause)
                self.relay.upstream_unreachable(self.name, f"connection closed ({cause})")


class RadSec:
    """The listener (when configured) and the upstream links, started and reloaded together."""

    def __init__(self, relay: Relay, config: Config, reuse_port: bool = False) -> None:
        self.relay = relay
        self.config = config
        self.listener = RadSecListener(relay, config, reuse_port) if config.radsec_listen is not None else None
        self.links: dict[str, UpstreamLink] = {}

    @property
    def active(self) -> bool:
        return self.listener is not None or any(u.transport == "radsec" for u in self.config.upstreams)

    async def start(self) -> None:
        if self.listener is not None:
            await self.listener.start()
        self._sync_links(self.config)

    def _sync_links(self, config: Config) -> None:
        wanted = {u.name: u for u in config.upstreams if u.transport == "radsec"}
        for name in [n for n in self.links if n not in wanted]:
            link = self.links.pop(name)
            asyncio.get_running_loop().create_task(link.close())
        for name, upstream in wanted.items():
            link = self.links.get(name)
            same_peer = link is not None and (link.config.address, link.config.radsec_port) == (
                upstream.address,
                upstream.radsec_port,
            )
            if link is not None and same_peer:
                link.reconfigure(upstream, config.tls)
                continue
            if link is not None:
                asyncio.get_running_loop().create_task(link.close())
            link = UpstreamLink(self.relay, upstream, config.tls)
            self.links[name] = link
            link.start()

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: certificates and clients anew; open connections are kept (a renewed
        certificate serves the connections made from now on)."""
        try:
            if self.listener is not None:
                self.listener.reconfigure(config)
            self._sync_links(config)
        except ConfigError as exc:
            log.error("reload: RadSec kept its running certificates: %s", exc)
            return
        self.config = config

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        for link in self.links.values():
            await link.close()
