"""The config schema (radius_op25b.core.config.SCHEMA): the shipped example shows every key of it,
and a key outside it is an error naming file, table and key, with the nearest known key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from radius_op25b.core.config import SCHEMA, load_config, parse_config
from radius_op25b.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
DEPLOY_CONFIG = REPO / "deploy" / "op25b.toml"

_HEADER = re.compile(r"^\s*#?\s*\[\[?\s*([A-Za-z_][\w-]*)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*#?\s*([A-Za-z_][\w-]*)\s*=")


def mentioned_keys(text: str) -> set[tuple[str, str]]:
    """(table, key) for every `key = ...` line, also commented out (`# key = value`), under the
    `[table]` / `[[table]]` header (commented or not) above it. Prose comments do not count."""
    found: set[tuple[str, str]] = set()
    table = ""
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            continue
        key = _KEY.match(line)
        if key and table:
            found.add((table, key.group(1)))
    return found


def test_the_comment_parser_reads_what_it_should() -> None:
    text = '[a]\nx = 1\n# y = 2   # note\n#   no key here, just prose = words\n[[b]]  # tables\n#z = "q"\n'
    assert mentioned_keys(text) == {("a", "x"), ("a", "y"), ("b", "z")}


def test_the_deploy_example_shows_every_key_of_the_schema() -> None:
    mentioned = mentioned_keys(DEPLOY_CONFIG.read_text())
    missing = [f"{t.name}.{k}" for t in SCHEMA.values() for k in t.key_names if (t.name, k) not in mentioned]
    assert missing == [], f"deploy/op25b.toml does not mention {', '.join(missing)}"
    unknown = sorted(f"{t}.{k}" for t, k in mentioned if t not in SCHEMA or k not in SCHEMA[t].key_names)
    assert unknown == [], f"deploy/op25b.toml mentions keys the schema does not know: {unknown}"


def test_the_deploy_example_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """As shipped: parsing reads no secret file, so the /etc/op25b paths need not exist here."""
    monkeypatch.delenv("OP25B_DATABASE_URL", raising=False)
    config = load_config(str(DEPLOY_CONFIG))
    assert config.database_url == "sqlite:////var/lib/op25b/op25b.db"
    assert config.spool_dir == "/var/lib/op25b/spool"
    assert [u.secret.source.ref for u in config.upstreams] == [  # type: ignore[union-attr]
        "/etc/op25b/aaa.secret",
        "/etc/op25b/aaa.secret",
        "/etc/op25b/partner-b.secret",
    ]
    assert [p.name for p in config.pools] == ["main", "partner-b"] and "acme-bras" in config.profiles


def test_the_init_example_parses() -> None:
    data = tomllib.loads((REPO / "radius_op25b" / "example.toml").read_text())
    assert parse_config(data, "example.toml").clients[0].name == "local-nas"


def test_a_misspelled_key_names_file_table_key_and_the_nearest_one() -> None:
    data = tomllib.loads(DEPLOY_CONFIG.read_text())
    data["upstreams"][1]["require_message_authenticater"] = True
    with pytest.raises(ConfigError) as err:
        parse_config(data, "op25b.toml")
    assert str(err.value) == (
        "op25b.toml: upstreams[1]: unknown key 'require_message_authenticater' (did you mean 'require_message_authenticator'?)"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"server": {"auth_lisen": "0.0.0.0:1812"}},
            "op25b.toml: server: unknown key 'auth_lisen' (did you mean 'auth_listen'?)",
        ),
        ({"accounting": {"spool": "x"}}, "op25b.toml: accounting: unknown key 'spool' (did you mean 'spool_dir'?)"),
        (
            {"profiles": [{"name": "p", "zzz": 1}]},
            "op25b.toml: profiles[0]: unknown key 'zzz' (known: name, change, nak_fallback, full, mobile, remove)",
        ),
        (
            {"clients": [{"name": "b", "address": "192.0.2.1", "secret_fil": "x"}]},
            "op25b.toml: clients[0]: unknown key 'secret_fil' (did you mean 'secret_file'?)",
        ),
        ({"polcy": {}}, "op25b.toml: polcy: unknown section (did you mean 'policy'?)"),
        ({"server": "0.0.0.0"}, "op25b.toml: server: must be a table ([server])"),
        ({"clients": {"name": "b"}}, "op25b.toml: clients: must be an array of tables ([[clients]])"),
    ],
)
def test_unknown_keys_and_wrong_shapes(data: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        parse_config(data, "op25b.toml")
    assert str(err.value) == message


def test_a_typo_is_reported_before_what_it_causes(tmp_path: Path) -> None:
    """`secret_fiel` would otherwise surface as "secret is required": the typo is the news."""
    path = tmp_path / "op25b.toml"
    path.write_text('[[clients]]\nname = "b"\naddress = "192.0.2.1"\nsecret_fiel = "b.secret"\n')
    with pytest.raises(ConfigError, match=r"clients\[0\]: unknown key 'secret_fiel' \(did you mean 'secret_file'\?\)"):
        load_config(str(path))
