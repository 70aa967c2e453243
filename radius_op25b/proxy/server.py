"""`op25b serve`: the asyncio shell. It opens the sockets, hands every datagram to the Relay,
reloads the config on SIGHUP, drains on SIGTERM, and runs the housekeeping timer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from radius_op25b import metrics
from radius_op25b.core.config import Config, load_config, resolve_secrets
from radius_op25b.errors import ConfigError, Op25bError
from radius_op25b.proxy.radsec import RadSec
from radius_op25b.proxy.relay import ACCT, AUTH, UPSTREAM_SOCKETS, Relay
from radius_op25b.services.policy import PolicyService
from radius_op25b.services.push import PushWorker
from radius_op25b.services.recorder import Recorder
from radius_op25b.services.spool import Spool

log = logging.getLogger("op25b.server")

RECEIVE_BUFFER = 8 * 1024 * 1024  # a BNG reboot arrives as one burst: let the kernel queue it
DRAIN_SECONDS = 5.0


class _NasProtocol(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, listener: str) -> None:
        self.relay, self.listener = relay, listener

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay.datagram_from_nas(self.listener, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s socket: %s", self.listener, exc)


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.index = -1

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay.datagram_from_upstream(self.index, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("upstream socket: %s", exc)


def udp_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # SO_RCVBUF is capped by net.core.rmem_max; as root the FORCE variant lifts the cap.
    for forced, plain in (
        (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
        (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF),
    ):
        for option in (forced, plain):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                break
            except OSError:
                continue
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


class ProxyServer:
    """One process's proxy: sockets, signals and the relay."""

    def __init__(
        self, config: Config, engine: Engine | None = None, reuse_port: bool = False, worker: int = 0, workers: int = 1
    ) -> None:
        self.config = config
        self.worker, self.workers = worker, workers
        self.engine = engine
        self.policy: PolicyService | None = None
        self.recorder: Recorder | None = None
        self.pusher: PushWorker | None = None
        self.reuse_port = reuse_port
        self.relay: Relay | None = None
        self.radsec: RadSec | None = None  # RFC 6614 listener and upstream links, when configured
        self._transports: list[asyncio.BaseTransport] = []
        self._stopping: asyncio.Event | None = None
        self.on_reload: list[Any] = []  # callbacks(config) run after a successful reload

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        hook = None
        if self.engine is not None:
            # A change may have queued CoA/Disconnect jobs: the push worker claims them at once.
            self.policy = PolicyService(self.config, self.engine, lambda: loop.call_soon_threadsafe(self._wake_pusher))
            self.policy.start()
            hook = self.policy.rewrite_accept
            self.on_reload.append(self.policy.reconfigure)
        self.relay = relay = Relay(self.config, loop, hook)
        if self.engine is not None and self.policy is not None:
            spool_dir = Path(self.config.spool_dir)
            own = spool_dir if self.worker == 0 else spool_dir / f"worker-{self.worker}"
            # Worker 0 also drains spools of workers that no longer exist (fewer --workers now).
            orphans = [d for d in spool_dir.glob("worker-*") if self.worker == 0 and _worker_number(d) >= self.workers]
            self.recorder = Recorder(
                self.engine,
                Spool(own, self.config.spool_max_bytes),
                loop,
                [Spool(d) for d in orphans],
                # Not spooled, not answered: the NAS's retransmission must be relayed afresh,
                # not dropped as a duplicate of a request in flight.
                on_unrecorded=lambda job: relay.dedup.forget(job.key, job.request.authenticator),
                drain_process=True,  # the drain's GIL time is not the relay's (recorder.py)
            )
            self.recorder.start()
            relay.accounting_hook = self.recorder.record
            policy = self.policy
            self.pusher = PushWorker(self.config, self.engine, loop, lambda: policy.ctx, source=source_address(self.config, 4))
            await self.pusher.start()
            self.on_reload.append(self.pusher.reconfigure)
        for listener, (host, port) in ((AUTH, self.config.auth_listen), (ACCT, self.config.acct_listen)):
            transport, _ = await loop.create_datagram_endpoint(
                lambda listener=listener: _NasProtocol(relay, listener), sock=udp_socket(host, port, self.reuse_port)
            )
            relay.nas_transports[listener] = transport  # type: ignore[assignment]
            self._transports.append(transport)
        families = {ipaddress.ip_address(u.address).version for u in self.config.upstreams} or {4}
        for version in sorted(families):
            host = source_address(self.config, version)
            for _ in range(UPSTREAM_SOCKETS):
                protocol = _UpstreamProtocol(relay)
                transport, _ = await loop.create_datagram_endpoint(lambda protocol=protocol: protocol, sock=udp_socket(host, 0))
                protocol.index = relay.add_upstream_transport(transport, version)  # type: ignore[arg-type]
                self._transports.append(transport)
        radsec = RadSec(relay, self.config, reuse_port=self.reuse_port)
        if radsec.active:
            await radsec.start()
            if radsec.listener is not None and self.pusher is not None:
                radsec.listener.carry_push(self.pusher)  # CoA for RadSec NASes over their connection
            self.radsec = radsec
            self.on_reload.append(radsec.reconfigure)  # SIGHUP: new certificates for new connections
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        if self.config.metrics_listen is not None and not metrics.multiprocess():
            metrics.start_http(self.config.metrics_listen)  # several workers: the parent serves it
        auth, acct = self.config.auth_listen, self.config.acct_listen
        log.info(
            (f"worker {self.worker}: " if self.workers > 1 else "")
            + "serving auth on %s:%d, accounting on %s:%d; %d client(s), %d upstream(s)",
            auth[0],
            auth[1],
            acct[0],
            acct[1],
            len(self.config.clients),
            len(self.config.upstreams),
        )

    def reload(self) -> None:
        """SIGHUP: re-read the config; a broken one is logged and the running one kept."""
        try:
            new = resolve_secrets(load_config(self.config.path))  # secret files are re-read too
        except Op25bError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        if (new.auth_listen, new.acct_listen) != (self.config.auth_listen, self.config.acct_listen):
            log.warning("reload: listen addresses changed; that takes a restart (kept the old ones)")
        assert self.relay is not None
        self.relay.apply_config(new)
        self.config = new
        for callback in self.on_reload:
            callback(new)
        log.info("reloaded %s: %d client(s), %d upstream(s)", new.path, len(new.clients), len(new.upstreams))

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    def _wake_pusher(self) -> None:
        if self.pusher is not None:
            self.pusher.wake()

    async def run(self) -> None:
        await self.start()
        assert self._stopping is not None and self.relay is not None
        while not self._stopping.is_set():
            self.relay.housekeeping()
            try:
                await asyncio.wait_for(self._stopping.wait(), 0.25)
            except TimeoutError:
                pass
        await self.drain()

    async def drain(self) -> None:
        """SIGTERM: take no new requests, let those in flight finish, then close."""
        assert self.relay is not None
        self.relay.draining = True
        waiting = sum(1 for p in self.relay.pending.values() if p.job is not None)
        log.info("draining: %d request(s) in flight", waiting)
        deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
        while any(p.job is not None for p in self.relay.pending.values()) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for transport in self._transports:
            transport.close()
        if self.radsec is not None:
            await self.radsec.close()
        if self.pusher is not None:
            await self.pusher.close()
        if self.recorder is not None:
            self.recorder.close()
        if self.policy is not None:
            self.policy.close()
        log.info("stopped")


def source_address(config: Config, version: int) -> str:
    """Where our requests to upstreams and NASes come from: `server.source_address` when set,
    else the auth listener's address when it is one of that family, else the wildcard - so a
    proxy told to listen on one address does not send from every other."""
    for host in (config.source_address, config.auth_listen[0]):
        if host and ipaddress.ip_address(host).version == version:
            return host
    return "::" if version == 6 else "0.0.0.0"


def _worker_number(path: Path) -> int:
    try:
        return int(path.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _run(server: ProxyServer) -> None:
    try:
        import uvloop  # libuv's event loop: a datagram costs far less than in asyncio's own
    except ImportError:
        asyncio.run(server.run())
    else:
        uvloop.run(server.run())


def serve(config: Config, engine: Engine | None = None, workers: int = 1) -> None:
    """Run the proxy; with several workers, each is a process on the same ports (SO_REUSEPORT:
    the kernel spreads NASes across them by address, so a NAS's retransmissions meet the
    worker that holds its duplicate cache)."""
    config = resolve_secrets(config)  # the only command that sends RADIUS reads the secrets
    if workers <= 1:
        _run(ProxyServer(config, engine))
        return
    if engine is not None:
        engine.dispose()  # no pooled connection may cross a fork
    # One scrape of the metrics port for all workers: each writes its values to files here, and
    # this process serves their sum (metrics.py).
    shared = metrics.prepare_multiprocess(Path(config.spool_dir) / "metrics") if config.metrics_listen else None
    children: list[int] = []
    for number in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if shared is not None:
                    metrics.enable_multiprocess(shared)
                _run(ProxyServer(config, engine, reuse_port=True, worker=number, workers=workers))
            except BaseException:
                log.exception("worker %d failed", number)
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(sig: int, _frame: Any) -> None:
        for child in children:
            try:
                os.kill(child, sig)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    unserved = None
    if shared is not None and config.metrics_listen is not None:
        try:
            metrics.serve_multiprocess(config.metrics_listen, shared)
        except OSError as exc:
            host, port = config.metrics_listen
            unserved = ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}")
            forward(signal.SIGTERM, None)
    failed = 0
    for child in children:
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        if shared is not None:
            metrics.worker_gone(child, shared)
        failed += os.waitstatus_to_exitcode(status) != 0
    if unserved is not None:
        raise unserved
    if failed:
        raise ConfigError(f"{failed} of {workers} workers failed; see the log")
