"""The support-staff CLI, run as `main([...])` against SQLite and the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from radius_op25b.cli import main
from tests.support.cli import ALICE, CONFIG, NOW, Op25b  # noqa: F401  (CONFIG: for other CLI tests)


def test_add_explain_full_with_the_profile_attributes(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE)
    got = op25b.json("policy", "explain", ALICE)
    assert got["class"] == "full" and got["reason"] == "policy default full" and got["profile"] == "juniper"
    assert got["attributes"] == [
        {"name": "ERX-Ingress-Policy-Name", "value": "OP25B-FULL"},
        {"name": "ERX-IPv6-Ingress-Policy-Name", "value": "OP25B-FULL-V6"},
    ]
    assert op25b.json("policy", "explain", ALICE, "--nas", "legacy")["class"] == "none"


def test_exempt_expiry_unexempt_and_audit(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE)
    op25b("subscriber", "exempt", ALICE, "--reason", "runs own MTA", "--for", "30d", "--actor", "alice-support")
    got = op25b.json("policy", "explain", ALICE)
    assert got["class"] == "none" and got["attributes"] == []
    assert got["reason"] == "exempt until 2026-12-31 09:00 UTC by alice-support: runs own MTA"
    # past the expiry (an injected clock) the filter is back
    later = NOW + timedelta(days=30, seconds=1)
    assert op25b.json("policy", "explain", ALICE, now=later)["class"] == "full"
    assert op25b.json("policy", "explain", ALICE, "--at", "2026-12-30T00:00")["class"] == "none"
    # unexempt ends it early
    op25b("subscriber", "unexempt", ALICE, "--reason", "moved to 587", now=NOW + timedelta(days=1))
    assert op25b.json("policy", "explain", ALICE, now=NOW + timedelta(days=1))["class"] == "full"
    actions = [e["action"] for e in op25b.json("audit", "--user", "ALICE@isp.example")["entries"]]
    assert actions == ["subscriber.add", "subscriber.exempt", "subscriber.unexempt"]
    shown = op25b.json("subscriber", "show", ALICE, now=NOW + timedelta(days=1))
    assert shown["exemptions"][0]["revoke_reason"] == "moved to 587" and shown["exemptions"][0]["active"] is False


def test_static_and_static_pool_and_back_to_dynamic(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE)
    assert op25b.json("policy", "explain", ALICE, "--framed-ip", "203.0.113.25")["reason"] == "static pool 203.0.113.0/24"
    op25b("subscriber", "set-static", ALICE, "192.0.2.77")
    got = op25b.json("policy", "explain", ALICE)
    assert (got["class"], got["reason"]) == ("none", "static subscriber (192.0.2.77)")
    op25b("subscriber", "set-dynamic", ALICE)
    assert op25b.json("policy", "explain", ALICE)["class"] == "full"


def test_set_class_override_and_back_to_default(op25b: Op25b) -> None:
    op25b("subscriber", "add", ALICE)
    op25b("subscriber", "set-class", ALICE, "mobile")
    assert op25b.json("policy", "explain", ALICE)["reason"] == "class override mobile"
    op25b("subscriber", "set-class", ALICE, "default")
    assert op25b.json("policy", "explain", ALICE)["class"] == "full"


def test_mobile_realm_and_partner_permits_in_every_profile(op25b: Op25b) -> None:
    op25b("realm", "add", "isp.example", "--class", "mobile")
    op25b("realm", "add", "isp-b.example", "--model", "B")
    op25b("mobile-mta", "add", "198.18.25.0/24", "--carrier", "mobile-x")
    op25b("realm", "permit-msa", "isp-b.example", "198.51.100.0/24", "--until", "2027-03-31")
    op25b("subscriber", "add", ALICE)
    mobile = op25b.json("policy", "explain", ALICE, "--profile", "rfc4849")
    assert mobile["class"] == "mobile" and mobile["reason"] == "realm isp.example default mobile"
    assert mobile["attributes"] == [{"name": "NAS-Filter-Rule", "value": "deny in 6 from any to 198.18.25.0/24 25"}]
    partner = {
        p: op25b.json("policy", "explain", "dave@isp-b.example", "--profile", p)["attributes"]
        for p in ("generic", "rfc4849", "cisco-ios", "cisco-xr", "juniper", "nokia-sr", "huawei", "mikrotik", "accel-ppp")
    }
    assert partner["generic"] == [{"name": "Filter-Id", "value": "OP25B-FULL-ISP-B-EXAMPLE"}]
    assert partner["rfc4849"][0]["value"] == "permit in 6 from any to 198.51.100.0/24 25\x00deny in 6 from any to any 25"
    assert partner["cisco-ios"][0]["value"] == "ip:inacl#1=permit tcp any 198.51.100.0 0.0.0.255 eq 25"
    assert partner["nokia-sr"] == partner["accel-ppp"] == partner["rfc4849"]
    assert all(partner[p] for p in partner)
    # the permit expires at the end of 2027-03-31 UTC; after that the plain full filter returns
    after = datetime(2027, 4, 1, 0, 0, 1, tzinfo=UTC)
    expired = op25b.json("policy", "explain", "dave@isp-b.example", "--profile", "generic", now=after)
    assert expired["attributes"] == [{"name": "Filter-Id", "value": "OP25B-FULL"}] and expired["msa_permits"] == []


def test_usernames_are_case_insensitive(op25b: Op25b) -> None:
    op25b("subscriber", "add", "Alice@ISP.example")
    assert op25b.json("subscriber", "show", "alice@isp.example")["username"] == "Alice@ISP.example"
    op25b("subscriber", "add", "ALICE@isp.example", expect=1)


def test_import_and_list(op25b: Op25b, tmp_path: Path) -> None:
    csv_file = tmp_path / "subs.csv"
    csv_file.write_text(
        "username,realm,ip_type,static_addresses,class,note\nu1@isp.example,,dynamic,,,\nu2@isp.example,,static,192.0.2.1 192.0.2.2,,shop\nu3@x,isp-b.example,,,mobile,\n"
    )
    assert op25b("subscriber", "import", str(csv_file))[0] == f"imported {csv_file}: 3 added, 0 changed, 0 unchanged"
    listed = op25b.json("subscriber", "list")["subscribers"]
    assert [(s["username"], s["realm"], s["ip_type"], s["static_addresses"], s["class_override"]) for s in listed] == [
        ("u1@isp.example", "isp.example", "dynamic", [], None),
        ("u2@isp.example", "isp.example", "static", ["192.0.2.1", "192.0.2.2"], None),
        ("u3@x", "isp-b.example", "dynamic", [], "mobile"),
    ]


def _bad_csv(tmp_path: Path) -> list[str]:
    lines = ["username,realm,ip_type,static_addresses,class,note"]
    lines += [f"user{i}@isp.example,,dynamic,,," for i in range(2, 57)] + ["user57@isp.example,,static,300.1.2.3,,"]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines + ["user58@isp.example,,,,,"]) + "\n")
    return ["subscriber", "import", str(path)]


BAD_INPUT = [
    # (id, argv, exit code, text the error line must contain)
    ("unknown-user", ["subscriber", "show", "nobody@isp.example"], 1, "no subscriber 'nobody@isp.example'"),
    ("unknown-user-exempt", ["subscriber", "exempt", "nobody@isp.example", "--reason", "x", "--for", "1d"], 1, "no subscriber"),
    ("malformed-ip", ["subscriber", "set-static", ALICE, "192.0.2.300"], 2, "'192.0.2.300' is not an IP address"),
    ("malformed-static-on-add", ["subscriber", "add", "eve@isp.example", "--static", "nope"], 2, "'nope' is not an IP address"),
    (
        "malformed-cidr",
        ["realm", "permit-msa", "isp-b.example", "198.51.100.0/33", "--until", "2027-01-01"],
        2,
        "is not a CIDR block",
    ),
    (
        "cidr-host-bits",
        ["realm", "permit-msa", "isp-b.example", "198.51.100.1/24", "--until", "2027-01-01"],
        2,
        "has host bits set",
    ),
    ("unknown-class", ["subscriber", "set-class", ALICE, "partial"], 2, "invalid choice: 'partial'"),
    ("unknown-profile", ["policy", "explain", ALICE, "--profile", "cisco-ios-xe"], 2, "unknown profile 'cisco-ios-xe'"),
    ("unknown-nas", ["policy", "explain", ALICE, "--nas", "bng9"], 1, "no NAS (client) named 'bng9'"),
    ("date-in-the-past", ["subscriber", "exempt", ALICE, "--reason", "x", "--until", "2020-01-01"], 2, "is not in the future"),
    (
        "permit-in-the-past",
        ["realm", "permit-msa", "isp-b.example", "198.51.100.0/24", "--until", "2026-11-01"],
        2,
        "is not in the future",
    ),
    ("bad-date", ["subscriber", "exempt", ALICE, "--reason", "x", "--until", "next week"], 2, "is not an ISO date"),
    ("bad-duration", ["subscriber", "exempt", ALICE, "--reason", "x", "--for", "30 days"], 2, "is not a duration"),
    (
        "both-until-and-for",
        ["subscriber", "exempt", ALICE, "--reason", "x", "--for", "1d", "--until", "2027-01-01"],
        2,
        "not allowed with",
    ),
    ("duplicate-add", ["subscriber", "add", ALICE], 1, "already exists"),
    ("duplicate-realm", ["realm", "add", "ISP-B.example"], 1, "realm 'isp-b.example' already exists"),
    ("unexempt-without-exemption", ["subscriber", "unexempt", ALICE, "--reason", "x"], 1, "has no active exemption"),
    ("missing-command", ["subscriber"], 2, "required"),
    ("missing-csv", ["subscriber", "import", "/nonexistent/subs.csv"], 2, "cannot read"),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_changes_nothing(op25b: Op25b, case: tuple[str, list[str], int, str]) -> None:
    _, argv, code, message = case
    op25b("subscriber", "add", ALICE)
    op25b("realm", "add", "isp-b.example")
    before = op25b.snapshot()
    [line] = op25b(*argv, expect=code)
    assert message in line
    assert op25b.snapshot() == before


def test_csv_with_a_bad_line_57_imports_nothing(op25b: Op25b, tmp_path: Path) -> None:
    before = op25b.snapshot()
    [line] = op25b(*_bad_csv(tmp_path), expect=2)
    assert "1 line(s) refused, nothing imported: line 57" in line and "'300.1.2.3' is not an IP address" in line
    assert op25b.snapshot() == before


def test_csv_with_an_existing_user_imports_nothing(op25b: Op25b, tmp_path: Path) -> None:
    op25b("subscriber", "add", "u2@isp.example")
    path = tmp_path / "dup.csv"
    path.write_text("u1@isp.example\nU2@isp.example\n")
    before = op25b.snapshot()
    [line] = op25b("subscriber", "import", str(path), expect=2)
    assert "the first line is not a header" in line and "--no-header" in line
    [line] = op25b("subscriber", "import", str(path), "--no-header", expect=1)  # a conflict, not a malformed value
    assert "line 2: subscriber 'u2@isp.example' already exists (give --update to change it)" in line
    assert op25b.snapshot() == before


CONFIG_ERRORS = [
    ("missing-key", "[[clients]]\nname = 'b'\nsecret = 'x'\n", "clients[0].address: is required"),
    (
        "misspelled-key",
        "[[clients]]\nname = 'b'\naddress = '192.0.2.1'\nsecret = 'x'\nprofle = 'generic'\n",
        "clients[0]: unknown key 'profle' (did you mean 'profile'?)",
    ),
    (
        "unknown-profile",
        "[[clients]]\nname = 'b'\naddress = '192.0.2.1'\nsecret = 'x'\nprofile = 'acme'\n",
        "clients[0].profile: unknown profile 'acme'",
    ),
    ("bad-class", "[policy]\ndefault_class = 'strict'\n", "policy.default_class: must be one of full, mobile, none"),
    (
        "bad-pool",
        "[policy]\nstatic_pools = ['203.0.113.0/99']\n",
        "policy.static_pools[0]: '203.0.113.0/99' is not an IP address or CIDR",
    ),
    ("bad-toml", "[policy\n", "not valid TOML"),
    ("unknown-section", "[polcy]\n", "polcy: unknown section"),
]


@pytest.mark.parametrize("case", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors_name_file_and_key(op25b: Op25b, case: tuple[str, str, str]) -> None:
    _, body, message = case
    op25b.config.write_text(f'[database]\nurl = "{op25b.url}"\n' + body)
    [line] = op25b("policy", "explain", ALICE, expect=1)
    assert str(op25b.config) in line and message in line


SECRETS_NOT_READ = [
    "[[clients]]\nname = 'b'\naddress = '192.0.2.1'\nsecret_file = '/nonexistent/b.secret'\n",
    "[[clients]]\nname = 'b'\naddress = '192.0.2.1'\nsecret_env = 'OP25B_TEST_UNSET_VAR'\n",
]


@pytest.mark.parametrize("body", SECRETS_NOT_READ, ids=["missing-secret-file", "unset-secret-env"])
def test_support_commands_do_not_need_the_radius_secrets(op25b: Op25b, body: str) -> None:
    """Only serve reads secrets (tests/test_config.py): an agent without the NAS secrets works."""
    op25b.config.write_text(f'[database]\nurl = "{op25b.url}"\n' + body)
    op25b("subscriber", "list")
    op25b("policy", "explain", ALICE)
    op25b("audit")


def test_schema_out_of_date_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "op25b.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/empty.db"\n')
    assert main(["-c", str(config), "subscriber", "list"]) == 1
    assert "is empty, not 0004; run `op25b db upgrade`" in capsys.readouterr().err
    assert main(["-c", str(config), "db", "upgrade"]) == 0
    assert main(["-c", str(config), "db", "current", "--json"], out=lambda s: capsys.readouterr() or print(s)) == 0


def test_init_writes_config_and_database(tmp_path: Path) -> None:
    out: list[str] = []
    assert main(["-c", str(tmp_path / "op25b.toml"), "init"], out=out.append) == 0
    assert (tmp_path / "op25b.toml").exists() and (tmp_path / "op25b.db").exists()
    assert main(["-c", str(tmp_path / "op25b.toml"), "init"], out=out.append) == 0
    assert "exists, kept" in out[-2]
