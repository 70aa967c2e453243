"""Running `op25b web` under uvicorn: [web] listen, optional TLS; access logs without query
strings or headers (no token or password ever reaches a log)."""

from __future__ import annotations

import logging
import sys

from sqlalchemy import Engine

from radius_op25b.core.config import Config, parse_host_port
from radius_op25b.errors import ConfigError, UsageError


def run(config: Config, engine: Engine, *, listen: str | None = None, log_level: str = "info") -> None:
    import uvicorn

    from radius_op25b.web.app import create_app

    host, port = config.web.listen
    if listen is not None:
        host, port = parse_host_port(listen, lambda message: UsageError(f"--listen: {message}"))
    tls = {}
    if config.web.tls_certificate and config.web.tls_key:
        for path in (config.web.tls_certificate, config.web.tls_key):
            try:
                open(path, "rb").close()
            except OSError as exc:
                raise ConfigError(f"{config.path}: web: cannot read {path}: {exc.strerror}") from None
        tls = {"ssl_certfile": config.web.tls_certificate, "ssl_keyfile": config.web.tls_key}
    logging.basicConfig(
        level=getattr(logging, log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    uvicorn.run(
        create_app(config, engine),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # the audit log names every change; request lines could carry a query with a name
        server_header=False,
        proxy_headers=False,  # the TCP peer is who asks; the SSO header is trusted only from [web] trusted_proxies
        **tls,  # type: ignore[arg-type]
    )
