"""Fixtures of the support desk's page tests: the app in-process on both backends (a TestClient
per client address, so the rate limit and the SSO header can be tested by peer), and a real
`op25b web` process on a fresh SQLite database for the browser tests, stopped by its PID."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, insert, select

from radius_op25b.core.config import load_config
from radius_op25b.services.desk import Desk
from radius_op25b.store import db
from radius_op25b.store.models import AcctSession, Base
from radius_op25b.web.app import WebState, create_app
from tests.support import processes
from tests.support.ports import free_tcp_port

PASSWORD = "correct horse battery"  # ≥ 12 characters, as `staff add` wants
ALICE = "alice@isp.example"
BOB = "bob@isp.example"

CONFIG = """
[database]
url = "{url}"

[policy]
default_class = "full"
static_pools = ["203.0.113.0/24"]

[[clients]]
name = "bng1"
address = "192.0.2.10"
secret = "s3cret"
profile = "generic"

[[clients]]
name = "bng2"
address = "192.0.2.20"
secret = "s3cret"
profile = "nokia-sr"

[[upstreams]]
name = "aaa1"
address = "127.0.0.1"
secret = "up"
{web}
"""

SSO = '\n[web]\ntrusted_user_header = "X-Remote-User"\ntrusted_proxies = ["10.0.0.5/32"]\n'


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


@dataclass
class Desks:
    """The app under test, its database, and helpers that act as the CLI would."""

    app: FastAPI
    engine: Engine
    url: str

    @property
    def state(self) -> WebState:
        state: WebState = self.app.state.op25b
        return state

    def client(self, address: str = "192.0.2.99", *, https: bool = False, **headers: str) -> TestClient:
        base = "https://testserver" if https else "http://testserver"
        return TestClient(self.app, base_url=base, client=(address, 50000), follow_redirects=False, headers=headers)

    def staff(self, name: str, role: str = "agent", password: str | None = PASSWORD) -> None:
        self.state.staff("test").add(name, role=role, password=password)

    def desk(self) -> Desk:
        return Desk(self.state.config, self.engine, actor="test")

    def subscriber(self, name: str, **fields: Any) -> None:
        self.desk().add_subscriber(name, **fields)

    def open_session(self, username: str, *, nas: str = "bng1", address: str = "192.0.2.10", ip: str = "100.64.0.9") -> None:
        """An open accounting session, as `serve` records one (tests/cli/test_desk.py does the same)."""
        started = datetime.now(UTC) - timedelta(hours=1)
        with self.engine.begin() as conn:
            conn.execute(
                insert(AcctSession).values(
                    nas_name=nas,
                    nas_address=address,
                    acct_session_id=f"sess-{username}-{nas}",
                    username=username,
                    username_key=username.lower(),
                    framed_ip=ip,
                    class_applied="full",
                    started_at=started,
                    updated_at=started,
                    input_octets=0,
                    output_octets=0,
                )
            )

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.engine.connect() as conn:
            return {t.name: sorted(map(tuple, conn.execute(select(t)).all()), key=repr) for t in Base.metadata.sorted_tables}

    def sign_in(self, client: TestClient, name: str, password: str = PASSWORD) -> str:
        """Sign `client` in through the form; the session's CSRF token (from the search page)."""
        token = form_token(client.get("/sign-in").text)
        done = client.post("/sign-in", data={"username": name, "password": password, "csrf": token})
        assert done.status_code == 303, done.text
        return form_token(client.get("/search").text)


@pytest.fixture
def make_desks(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Desks]]:
    engines: list[Engine] = []

    def make(web: str = "") -> Desks:
        path = tmp_path / f"op25b-{len(engines)}.toml"
        path.write_text(CONFIG.format(url=database_url, web=web))
        config = load_config(str(path))
        engine = db.make_engine(config.database_url)
        engines.append(engine)
        return Desks(create_app(config, engine), engine, database_url)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def desks(make_desks: Callable[..., Desks]) -> Desks:
    return make_desks()


# --- a real `op25b web` ---------------------------------------------------------------------------


@dataclass
class WebProcess:
    url: str  # http://127.0.0.1:PORT
    config: Path
    database_url: str
    log: Path

    def op25b(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "radius_op25b", "-c", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def web_process(tmp_path: Path) -> Iterator[WebProcess]:
    """`op25b web` on a free port over a fresh SQLite database (made by `op25b db upgrade`), with
    an agent and a viewer (`op25b staff add --password-stdin`) and two subscribers."""
    port = free_tcp_port()
    config = tmp_path / "op25b.toml"
    url = f"sqlite:///{tmp_path / 'op25b.db'}"
    config.write_text(CONFIG.format(url=url, web=f'\n[web]\nlisten = "127.0.0.1:{port}"\n'))
    web = WebProcess(f"http://127.0.0.1:{port}", config, url, tmp_path / "web.log")
    web.op25b("db", "upgrade")
    web.op25b("staff", "add", "ayumi", "--role", "agent", "--password-stdin", stdin=PASSWORD + "\n")
    web.op25b("staff", "add", "kenji", "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n")
    web.op25b("subscriber", "add", ALICE)
    web.op25b("subscriber", "add", BOB)
    engine = create_engine(url)
    with engine.begin() as conn:  # alice is online on bng1 (generic): an exemption disconnects her
        started = datetime.now(UTC) - timedelta(hours=2)
        conn.execute(
            insert(AcctSession).values(
                nas_name="bng1",
                nas_address="192.0.2.10",
                acct_session_id="sess-alice",
                username=ALICE,
                username_key=ALICE,
                framed_ip="100.64.0.9",
                class_applied="full",
                started_at=started,
                updated_at=started,
                input_octets=0,
                output_octets=0,
            )
        )
    engine.dispose()
    proc = processes.spawn(
        [sys.executable, "-m", "radius_op25b", "-c", str(config), "web", "--listen", f"127.0.0.1:{port}"],
        web.log,
        death_signal="KILL",
    )

    def answering() -> bool:
        try:
            return urllib.request.urlopen(f"{web.url}/sign-in", timeout=2).status == 200
        except OSError:
            return proc.poll() is not None  # stop waiting: it died

    try:
        processes.wait_until(answering, timeout=20)
        assert proc.poll() is None, processes.read_text(web.log)[-3000:]
        yield web
    finally:
        processes.stop(proc)
