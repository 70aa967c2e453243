"""What a user installs: the wheel, built from this tree, in a fresh venv outside the checkout.

Last round a wheel without its `proxy/` package passed every test, because all of them ran from
an editable install. Here the wheel's file list is compared with the source tree, and the
installed `op25b` is run from an empty directory: `init`, `db upgrade`, `serve` in front of a
real FreeRADIUS, and radclient gets the Accept with its filter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support import processes
from tests.support.freeradius import DEFAULT_SECRET
from tests.support.ports import free_tcp_port, free_udp_port
from tests.support.radclient import parse_reply, radclient
from tests.test_layers import ROOT, source_modules

pytestmark = pytest.mark.freeradius


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (found,) = out.glob("radius_op25b-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a new venv (no system site-packages) with only the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return venv / "bin"


def test_the_wheel_has_every_module_of_the_source_tree(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for module, path in source_modules().items():
        parts = module.split(".")
        expected.add("/".join(parts) + ("/__init__.py" if path.name == "__init__.py" else ".py"))
    assert len(expected) > 30
    assert sorted(expected - names) == []
    # and what the modules read at run time
    for data in (
        "radius_op25b/example.toml",
        "radius_op25b/migrations/script.py.mako",
        "radius_op25b/dictionaries/dictionary",
        "radius_op25b/py.typed",
    ):
        assert data in names
    # the pages' templates and style sheet, every one of them
    web = Path(__file__).resolve().parents[1] / "radius_op25b" / "web"
    shipped = [f"radius_op25b/web/{p.relative_to(web)}" for p in [*web.glob("templates/*"), *web.glob("static/*")]]
    assert len(shipped) > 5 and sorted(set(shipped) - names) == []
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith("LICENSE") for n in names)


def _user_env() -> dict[str, str]:
    """The environment a user's shell would have: none of the checkout's OP25B_/PYTHON settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OP25B_", "PYTHON"))}


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "op25b"), *args], cwd=cwd, env=_user_env(), capture_output=True, text=True, timeout=60)


def _start(bin_dir: Path, cwd: Path, log: Any, *args: str) -> subprocess.Popen[bytes]:
    """`op25b ARGS` of the installed wheel, running in `cwd`, its output in `log`."""
    return subprocess.Popen([str(bin_dir / "op25b"), *args], cwd=cwd, env=_user_env(), stdout=log, stderr=subprocess.STDOUT)


def test_the_installed_command_runs_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import radius_op25b, sys; print(radius_op25b.__file__); print('sqlalchemy' in sys.modules)",
        ],
        cwd=empty,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(installed.parent)), where  # the wheel's copy, not the checkout's
    version = _run(installed, empty, "--version")
    assert version.returncode == 0 and re.fullmatch(r"op25b \d+\.\d+\.\d+\n", version.stdout), version


def test_serve_from_the_wheel_relays_and_filters(installed: Path, tmp_path: Path, freeradius_upstream) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "site"
    work.mkdir()
    init = _run(installed, work, "init")
    assert init.returncode == 0, init.stderr
    assert (work / "op25b.toml").exists() and (work / "op25b.db").exists()
    auth, acct = free_udp_port(), free_udp_port()
    config = (work / "op25b.toml").read_text()
    config = config.replace('auth_listen = "127.0.0.1:1812"', f'auth_listen = "127.0.0.1:{auth}"')
    config = config.replace('acct_listen = "127.0.0.1:1813"', f'acct_listen = "127.0.0.1:{acct}"')
    config = config.replace("auth_port = 11812", f"auth_port = {freeradius_upstream.auth_port}")
    config = config.replace("acct_port = 11813", f"acct_port = {freeradius_upstream.acct_port}")
    # the example's upstream block ends with its secret: the test upstream has its own
    head, _, upstream = config.partition("[[upstreams]]")
    config = head + "[[upstreams]]" + upstream.replace('secret = "testing123"', f'secret = "{DEFAULT_SECRET}"', 1)
    assert f"127.0.0.1:{auth}" in config and f"auth_port = {freeradius_upstream.auth_port}" in config
    (work / "op25b.toml").write_text(config)
    upgrade = _run(installed, work, "db", "upgrade")
    assert upgrade.returncode == 0 and "already at" in upgrade.stdout, upgrade

    log = (work / "serve.log").open("wb")
    proc = _start(installed, work, log, "serve")
    try:
        reply = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            done = radclient(
                'User-Name = "alice@isp.example"\nUser-Password = "alicepw"\n', f"127.0.0.1:{auth}", "testing123", timeout=1.0
            )
            if "Access-Accept" in done.stdout:
                reply = parse_reply(done.stdout)
                break
            time.sleep(0.3)
        assert reply is not None, (work / "serve.log").read_text()[-2000:]
        assert reply.get("Filter-Id") == "OP25B-FULL"
        assert "0x" + b"op25b:full".hex() in reply.all("Class")  # radclient prints Class as octets
    finally:
        processes.stop(proc, timeout=15)
        log.close()


def test_web_from_the_wheel_renders_its_pages(installed: Path, tmp_path: Path) -> None:
    """`op25b web` of the installed wheel: its templates and style sheet load from the package."""
    import urllib.request

    work = tmp_path / "desk"
    work.mkdir()
    assert _run(installed, work, "init").returncode == 0
    port = free_tcp_port()
    log = (work / "web.log").open("wb")
    proc = _start(installed, work, log, "web", "--listen", f"127.0.0.1:{port}")
    try:
        page = css = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None and page is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/sign-in", timeout=1) as r:
                    page = r.read().decode()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/op25b.css", timeout=1) as r:
                    css = r.read().decode()
            except OSError:
                time.sleep(0.2)
        assert page is not None, (work / "web.log").read_text()[-2000:]
        assert "Username" in page and "Password" in page and "Sign in" in page
        assert css and "{" in css
    finally:
        processes.stop(proc, timeout=15)
        log.close()
