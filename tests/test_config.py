"""Config: typed objects from TOML, secrets that never show, errors that name file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from radius_op25b.core.config import Secret, load_config, parse_config
from radius_op25b.errors import ConfigError

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
    config = load_config(str(path))
    assert config.clients[0].secret.reveal() == b"from-env"
    assert config.upstreams[0].secret.reveal() == b"from-file"
    assert config.database_url == f"sqlite:///{tmp_path / 'op25b.db'}"  # next to the config file


def test_environment_overrides_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "op25b.toml"
    path.write_text('[database]\nurl = "sqlite:///x.db"\n')
    monkeypatch.setenv("OP25B_DATABASE_URL", "postgresql+psycopg2://op25b@db/op25b")
    assert load_config(str(path)).database_url == "postgresql+psycopg2://op25b@db/op25b"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"server": {"auth_listen": "1812"}}, "server.auth_listen: '1812' is not HOST:PORT"),
        ({"clients": [{"name": "b", "address": "192.0.2.1", "secret": "x", "coa_port": 70000}]}, "clients[0].coa_port: port 70000"),
        ({"clients": [{"name": "b", "address": "192.0.2.1", "secret": "x", "secret_env": "Y"}]}, "clients[0].secret_env: give only one"),
        ({"upstreams": [{"name": "u", "address": "10.0.0.1", "secret": ""}]}, "upstreams[0].secret: the secret is empty"),
        ({"upstreams": [{"name": "u", "address": "10.0.0.1", "secret": "x", "response_window": 0}]}, "upstreams[0].response_window: must be a positive"),
        ({"upstreams": [{"name": "u", "address": "10.0.0.1", "secret": "x"}], "pools": [{"name": "p", "upstreams": ["v"]}]}, "pools[0].upstreams[0]: no upstream named 'v'"),
        ({"routes": [{"realm": "r", "pool": "nope"}]}, "routes[0].pool: no pool named 'nope'"),
        ({"clients": [{"name": "b", "address": "192.0.2.1", "secret": "x"}, {"name": "b", "address": "192.0.2.2", "secret": "x"}]}, "clients[1].name: 'b' is used twice"),
        ({"profiles": [{"name": "acme", "full": ["No-Such-Attribute = x"]}]}, "profiles[0]: attribute 'No-Such-Attribute' is not in the dictionary"),
        ({"profiles": [{"name": "generic"}]}, "profiles[0].name: profile 'generic' is already defined"),
        ({"clients": [{"name": "b", "address": "192.0.2.1", "secret": "x", "enforce": "yes"}]}, "clients[0].enforce: must be a bool, not str"),
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
    monkeypatch.setenv("LNS_SECRET", "x")
    for table in production["clients"] + production["upstreams"]:
        if "secret_file" in table:
            table["secret"] = table.pop("secret_file")  # the example's paths do not exist here
    config = parse_config(production, "deploy/op25b.toml")
    assert [p.name for p in config.pools] == ["main", "partner-b"] and "acme-bras" in config.profiles
