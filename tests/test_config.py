"""Config: typed objects from TOML, secrets that never show, errors that name file and key."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from radius_op25b.cli import main
from radius_op25b.core.config import Secret, load_config, parse_config, resolve_secrets
from radius_op25b.errors import ConfigError
from tests.support.harness import ProxyProcess
from tests.support.ports import free_udp_port
from tests.support.processes import SETPRIV, wait_until
from tests.support.rawclient import status_server

REPO = Path(__file__).resolve().parent.parent


def test_secret_never_shows() -> None:
    s = Secret(b"hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and "hunter2" not in f"{s}"
    config = parse_config({"clients": [{"name": "b", "address": "192.0.2.1", "secret": "hunter2"}]})
    assert "hunter2" not in repr(config)


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "up.secret").write_text("from-file\n")
    monkeypatch.setenv("BNG_SECRET", "from-env")
    path = tmp_path / "op25b.toml"
    path.write_text(
        '[[clients]]\nname = "b"\naddress = "192.0.2.0/24"\nsecret_env = "BNG_SECRET"\n'
        '[[upstreams]]\nname = "u"\naddress = "10.0.0.1"\nsecret_file = "up.secret"\n'
    )
    parsed = load_config(str(path))
    with pytest.raises(RuntimeError, match="resolve_secrets"):  # not read yet: a programming error
        parsed.clients[0].secret.reveal()
    config = resolve_secrets(parsed)
    assert config.clients[0].secret.reveal() == b"from-env"
    assert config.upstreams[0].secret.reveal() == b"from-file"
    assert config.database_url == f"sqlite:///{tmp_path / 'op25b.db'}"  # next to the config file
    assert "from-file" not in repr(config) and "from-env" not in repr(config)
    assert resolve_secrets(config) == config  # a second call reads nothing new


def test_environment_overrides_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "op25b.toml"
    path.write_text('[database]\nurl = "sqlite:///x.db"\n')
    monkeypatch.setenv("OP25B_DATABASE_URL", "postgresql+psycopg2://op25b@db/op25b")
    assert load_config(str(path)).database_url == "postgresql+psycopg2://op25b@db/op25b"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"server": {"auth_listen": "1812"}}, "server.auth_listen: '1812' is not HOST:PORT"),
        (
            {"clients": [{"name": "b", "address": "192.0.2.1", "secret": "x", "coa_port": 70000}]},
            "clients[0].coa_port: port 70000",
        ),
        (
            {"clients": [{"name": "b", "address": "192.0.2.1", "secret": "x", "secret_env": "Y"}]},
            "clients[0].secret_env: give only one",
        ),
        ({"upstreams": [{"name": "u", "address": "10.0.0.1", "secret": ""}]}, "upstreams[0].secret: the secret is empty"),
        (
            {"upstreams": [{"name": "u", "address": "10.0.0.1", "secret": "x", "response_window": 0}]},
            "upstreams[0].response_window: must be a positive",
        ),
        (
            {"upstreams": [{"name": "u", "address": "10.0.0.1", "secret": "x"}], "pools": [{"name": "p", "upstreams": ["v"]}]},
            "pools[0].upstreams[0]: no upstream named 'v'",
        ),
        ({"routes": [{"realm": "r", "pool": "nope"}]}, "routes[0].pool: no pool named 'nope'"),
        (
            {
                "clients": [
                    {"name": "b", "address": "192.0.2.1", "secret": "x"},
                    {"name": "b", "address": "192.0.2.2", "secret": "x"},
                ]
            },
            "clients[1].name: 'b' is used twice",
        ),
        (
            {"profiles": [{"name": "acme", "full": ["No-Such-Attribute = x"]}]},
            "profiles[0]: attribute 'No-Such-Attribute' is not in the dictionary",
        ),
        ({"profiles": [{"name": "generic"}]}, "profiles[0].name: profile 'generic' is already defined"),
        (
            {"clients": [{"name": "b", "address": "192.0.2.1", "secret": "x", "enforce": "yes"}]},
            "clients[0].enforce: must be a bool, not str",
        ),
    ],
)
def test_errors_name_file_and_key(data: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        parse_config(data, "op25b.toml")
    assert str(err.value).startswith("op25b.toml: ") and message in str(err.value)
    assert "hunter" not in str(err.value)


def test_the_shipped_examples_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    example = tomllib.loads((REPO / "radius_op25b" / "example.toml").read_text())
    assert parse_config(example).clients[0].profile == "generic"
    production = tomllib.loads((REPO / "deploy" / "op25b.toml").read_text())
    config = parse_config(production, "deploy/op25b.toml")  # reads no secret: the paths need not exist
    assert [p.name for p in config.pools] == ["main", "partner-b"] and "acme-bras" in config.profiles


# --- secrets are read only by the command that sends RADIUS --------------------------------------

UNREADABLE = (
    '[[clients]]\nname = "bng1"\naddress = "127.0.0.1"\nsecret_file = "{missing}"\n'
    '[[clients]]\nname = "bng2"\naddress = "192.0.2.2"\nsecret = "x"\ncoa_secret_env = "OP25B_TEST_UNSET_COA"\n'
    '[[upstreams]]\nname = "u"\naddress = "127.0.0.1"\nauth_port = {port}\nacct_port = {port}\nsecret_env = "OP25B_TEST_UNSET_UP"\n'
)


def _unreadable_config(directory: Path) -> Path:
    path = directory / "op25b.toml"
    body = UNREADABLE.format(missing=directory / "no-such.secret", port=free_udp_port())
    path.write_text(f'[database]\nurl = "sqlite:///{directory / "op25b.db"}"\n' + body)
    return path


def test_parsing_reads_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing secret file and unset variables do not stop a command that sends no RADIUS."""
    config = _unreadable_config(tmp_path)
    parsed = load_config(str(config))
    assert not parsed.clients[0].secret.resolved and not parsed.upstreams[0].secret.resolved
    assert parsed.clients[0].secret.source.ref == str(tmp_path / "no-such.secret")  # type: ignore[union-attr]
    assert main(["-c", str(config), "db", "upgrade"], out=lambda s: None) == 0
    out: list[str] = []
    assert main(["-c", str(config), "subscriber", "list"], out=out.append) == 0, capsys.readouterr().err
    assert out == ["(no subscribers)"]


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ({"secret_env": "OP25B_TEST_UNSET_BNG2"}, "op25b.toml: clients[2].secret_env: variable OP25B_TEST_UNSET_BNG2 is not set"),
        (
            {"secret": "x", "coa_secret_env": "OP25B_TEST_UNSET_COA"},
            "op25b.toml: clients[2].coa_secret_env: variable OP25B_TEST_UNSET_COA is not set",
        ),
        (
            {"secret_file": "/nonexistent/bng2.secret"},
            "op25b.toml: clients[2].secret_file: cannot read /nonexistent/bng2.secret: No such file or directory",
        ),
    ],
)
def test_resolve_names_file_and_key(client: dict, message: str) -> None:  # type: ignore[type-arg]
    clients = [{"name": f"b{i}", "address": f"192.0.2.{i + 1}", "secret": "x"} for i in range(2)]
    config = parse_config({"clients": [*clients, {"name": "b2", "address": "192.0.2.3", **client}]}, "op25b.toml")
    with pytest.raises(ConfigError) as err:
        resolve_secrets(config)
    assert str(err.value) == message


def test_resolve_refuses_an_empty_secret_file(tmp_path: Path) -> None:
    (tmp_path / "empty.secret").write_text("\n")
    config = parse_config(
        {"upstreams": [{"name": "u", "address": "10.0.0.1", "secret_file": "empty.secret"}]}, str(tmp_path / "op25b.toml")
    )
    with pytest.raises(ConfigError, match=r"upstreams\[0\]\.secret_file: the secret is empty"):
        resolve_secrets(config)


def test_serve_with_an_unreadable_secret_file_says_so_in_one_line(tmp_path: Path) -> None:
    config = _unreadable_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OP25B_")}
    run = [sys.executable, "-m", "radius_op25b", "-c", str(config)]
    assert subprocess.run([*run, "db", "upgrade"], capture_output=True, env=env, timeout=60).returncode == 0
    done = subprocess.run([*run, "serve"], capture_output=True, text=True, env=env, timeout=60)
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert (
        lines[0]
        == f"error: {config}: clients[0].secret_file: cannot read {tmp_path / 'no-such.secret'}: No such file or directory"
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user may enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="op25b-config-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(not SETPRIV or os.geteuid() != 0, reason="needs root and setpriv to run as another user")
def test_subscriber_list_as_a_user_who_may_not_read_the_secret(shared_dir: Path) -> None:
    """The support agent's case: the NAS secret file is there but mode 000 (and not theirs)."""
    secret = shared_dir / "bng1.secret"
    secret.write_text("s3cret\n")
    secret.chmod(0)
    config = shared_dir / "op25b.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{shared_dir / "op25b.db"}"\n'
        f'[[clients]]\nname = "bng1"\naddress = "192.0.2.1"\nsecret_file = "{secret}"\n'
        f'[[upstreams]]\nname = "u"\naddress = "127.0.0.1"\nauth_port = {free_udp_port()}\nsecret = "x"\n'
        f'[server]\nauth_listen = "127.0.0.1:{free_udp_port()}"\nacct_listen = "127.0.0.1:{free_udp_port()}"\n'
    )
    config.chmod(0o644)
    assert main(["-c", str(config), "db", "upgrade"], out=lambda s: None) == 0
    os.chown(shared_dir / "op25b.db", 65534, 65534)
    as_nobody = [
        SETPRIV,
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        sys.executable,
        "-m",
        "radius_op25b",
        "-c",
        str(config),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OP25B_")}
    listed = subprocess.run([*as_nobody, "subscriber", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0 and listed.stdout.strip() == "(no subscribers)", listed.stderr
    served = subprocess.run([*as_nobody, "serve"], capture_output=True, text=True, env=env, timeout=60)
    assert served.returncode == 1 and served.stderr.splitlines() == [
        f"error: {config}: clients[0].secret_file: cannot read {secret}: Permission denied"
    ], served.stderr


def test_sighup_rereads_secret_files_and_keeps_the_running_ones_when_it_cannot(tmp_path: Path) -> None:
    secret = tmp_path / "nas.secret"
    secret.write_text("first\n")
    body = (
        f'[[clients]]\nname = "nas"\naddress = "127.0.0.1"\nsecret_file = "{secret.name}"\nrequire_message_authenticator = false\n\n'
        f'[[upstreams]]\nname = "u"\naddress = "127.0.0.1"\nauth_port = {free_udp_port()}\nacct_port = {free_udp_port()}\nsecret = "x"\n'
    )
    with ProxyProcess(tmp_path, body) as proxy:
        host, port = "127.0.0.1", proxy.auth_port
        assert status_server(host, port, "first") == 2
        secret.write_text("second\n")
        offset = len(proxy.log_text())
        proxy.signal(signal.SIGHUP)
        proxy.wait_for_log("reloaded", after=offset)
        assert wait_until(lambda: status_server(host, port, "second") == 2, 5)
        assert status_server(host, port, "first") is None  # the check that could fail
        secret.unlink()
        offset = len(proxy.log_text())
        proxy.signal(signal.SIGHUP)
        proxy.wait_for_log(f"cannot read {secret}", after=offset)
        assert "reload failed, keeping the running configuration" in proxy.log_text()[offset:]
        assert status_server(host, port, "second") == 2 and proxy.alive
