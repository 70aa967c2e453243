"""`op25b acl render|report|diff` and `op25b export dynamic-ranges|ptr-check` through
`radius_op25b.cli.main`, on SQLite and PostgreSQL (the op25b fixture, tests/support/cli.py)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import radius_op25b.cli as cli_main
from radius_op25b.cli import acl as acl_cli
from radius_op25b.cli import commands
from radius_op25b.cli import parser as cli_parser
from tests.support.cli import NOW, Op25b

PARTNER = "isp-b.example"


@pytest.fixture(autouse=True)
def wired(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Until cli/parser.py calls acl_cli.add_parsers (and commands.py re-exports cmd_acl and
    cmd_export), wire them the same way here; once it does, this does nothing."""
    original = cli_parser.build_parser
    probe = original()
    sub = next(a for a in probe._actions if isinstance(a, argparse._SubParsersAction))
    if "acl" in sub.choices:
        yield
        return

    def build_parser() -> argparse.ArgumentParser:
        p = original()
        top = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        common = cli_parser._Parser(add_help=False)
        cli_parser._global_options(common, top=False)

        def group(parent, name, text, dest, metavar):  # type: ignore[no-untyped-def]
            q = parent.add_parser(name, help=text, description=text, parents=[common])
            return q.add_subparsers(dest=dest, required=True, metavar=metavar, parser_class=cli_parser._Parser)

        def leaf(parent, name, text, func, **kw):  # type: ignore[no-untyped-def]
            q = parent.add_parser(name, help=text, description=kw.get("description", text), parents=[common])
            q.set_defaults(func=func)
            return q

        acl_cli.add_parsers(top, leaf, group)
        return p

    monkeypatch.setattr(cli_main, "build_parser", build_parser)
    monkeypatch.setattr(commands, "cmd_acl", acl_cli.cmd_acl, raising=False)
    monkeypatch.setattr(commands, "cmd_export", acl_cli.cmd_export, raising=False)
    yield


def seed(op25b: Op25b) -> None:
    """One partner realm with two adjacent /25 permits and an IPv6 one, an expired permit, a realm
    with no permits, and two mobile carriers' blocks."""
    op25b("realm", "add", PARTNER, "--model", "B")
    op25b("realm", "add", "isp-c.example")
    op25b("realm", "permit-msa", PARTNER, "198.51.100.0/25", "--until", "2027-01-31")
    op25b("realm", "permit-msa", PARTNER, "198.51.100.128/25", "--until", "2027-03-31")
    op25b("realm", "permit-msa", PARTNER, "2001:db8:b::/48", "--until", "2027-01-31")
    op25b("realm", "permit-msa", PARTNER, "192.0.2.0/28", "--until", "2026-12-05")
    op25b("mobile-mta", "add", "192.0.2.128/25", "--carrier", "carrier-a")
    op25b("mobile-mta", "add", "203.0.113.0/25", "--carrier", "carrier-b")


LATER = NOW + timedelta(days=10)  # the 192.0.2.0/28 permit has ended


@pytest.mark.parametrize("vendor", ["nftables", "cisco-ios", "cisco-xr", "junos", "nokia-sr", "mikrotik"])
def test_render_each_vendor(op25b: Op25b, vendor: str) -> None:
    seed(op25b)
    data = op25b.json("acl", "render", "--vendor", vendor, now=LATER)
    assert data["vendor"] == vendor
    partner = [f for f in data["filters"] if f["realm"] == PARTNER]
    if vendor == "nokia-sr":
        assert partner == []  # the nokia-sr profile sends partner permits inline
    else:
        v4 = next(f for f in partner if f["family"] in ("ipv4", "inet"))
        assert [p["cidr"] for p in v4["permits"] if ":" not in p["cidr"]] == ["198.51.100.0/24"]
    mobile = [f for f in data["filters"] if f["class"] == "mobile" and f["family"] in ("ipv4", "inet")]
    assert [b["cidr"] for b in mobile[0]["blocks"]] == ["192.0.2.128/25", "203.0.113.0/25"]
    text = "\n".join(op25b("acl", "render", "--vendor", vendor, now=LATER))
    assert "192.0.2.0/28 (permit ended: it held until 2026-12-05)" in text or vendor == "nokia-sr"
    assert "isp-c" not in text


def test_render_to_file_and_nft_check(op25b: Op25b, tmp_path: Path) -> None:
    seed(op25b)
    out = tmp_path / "op25b.nft"
    lines = op25b("acl", "render", "--vendor", "nftables", "-o", str(out), now=LATER)
    assert lines == [f"wrote {out}: 3 nftables filter(s), 6 rule(s)"]
    nft = shutil.which("nft")
    if nft is None:
        pytest.skip("nft is not installed")
    done = subprocess.run([nft, "-c", "-f", str(out)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_render_selection(op25b: Op25b) -> None:
    seed(op25b)
    data = op25b.json("acl", "render", "--vendor", "junos", "--realm", PARTNER, "--class", "full")
    assert [(f["name"], f["rules"]) for f in data["filters"]] == [
        ("OP25B-FULL-ISP-B-EXAMPLE", 4),  # /24 + /28 (not yet ended at NOW), deny, accept-rest
        ("OP25B-FULL-ISP-B-EXAMPLE-V6", 3),
    ]
    assert op25b("acl", "render", "--vendor", "junos", "--realm", "nowhere.example", expect=1) == [
        "error: no realm 'nowhere.example' (realms: isp-b.example, isp-c.example)"
    ]
    assert op25b("acl", "render", "--vendor", "vyos", expect=2)[0].startswith("error: argument --vendor: invalid choice")


def test_report_jeag_1100_beside_11(op25b: Op25b) -> None:
    pools = ", ".join(f'"10.{i // 100}.{2 * (i % 100)}.0/24"' for i in range(100))
    op25b.config.write_text(
        op25b.config.read_text().replace('static_pools = ["203.0.113.0/24"]', f"static_pools = []\ndynamic_pools = [{pools}]")
    )
    op25b("realm", "add", PARTNER)
    for i in range(10):
        op25b("realm", "permit-msa", PARTNER, f"198.18.{2 * i}.0/24", "--until", "2027-12-31")
    data = op25b.json("acl", "report")
    row = next(f for f in data["filters"] if f["realm"] == PARTNER and f["family"] == "ipv4")
    assert (row["entries"], row["termination_lines"], row["core_edge_lines"]) == (10, 11, 1_100)
    assert data["dynamic_blocks"] == {"ipv4": 100, "ipv6": 0}
    assert data["vendors"] == ["junos"]  # the test config's one enforcing client is juniper
    assert row["rendered_rules"] == {"junos": 12}
    text = op25b("acl", "report")[0]
    line = next(x for x in text.splitlines() if x.startswith("OP25B-FULL-ISP-B-EXAMPLE ") and "ipv4" in x)
    assert line.split()[-4:] == ["10", "11", "1,100", "12"]


def test_diff_and_expiring(op25b: Op25b, tmp_path: Path) -> None:
    seed(op25b)
    on_router = tmp_path / "router.txt"
    op25b("acl", "render", "--vendor", "cisco-xr", "-o", str(on_router))
    assert op25b("acl", "diff", "--vendor", "cisco-xr", "--against", str(on_router))[0].startswith("no change:")
    data = op25b.json("acl", "diff", "--vendor", "cisco-xr", "--against", str(on_router), now=LATER)
    assert data["changed"] is True
    assert " 20 permit tcp any 192.0.2.0 0.0.0.15 eq 25" in data["removed"]
    assert any("left out: 192.0.2.0/28" in line for line in data["added"])
    assert data["expiring"] == []
    soon = op25b.json("acl", "diff", "--vendor", "cisco-xr", "--against", str(on_router), "--expiring-within", "62d")
    assert [(e["cidr"], e["until"][:10]) for e in soon["expiring"]] == [
        ("192.0.2.0/28", "2026-12-06"),
        ("198.51.100.0/25", "2027-02-01"),
        ("2001:db8:b::/48", "2027-02-01"),
    ]
    text = op25b("acl", "diff", "--vendor", "cisco-xr", "--against", str(on_router), "--expiring-within", "7d")
    assert text[0].endswith("permits ending within 1w:\n  isp-b.example 192.0.2.0/28 until 2026-12-05, end of day UTC")
    assert op25b("acl", "diff", "--vendor", "junos", "--against", str(tmp_path / "none"), expect=2)[0].startswith(
        f"error: --against {tmp_path / 'none'}: cannot read"
    )
    # a file name no system call takes (a NUL byte) is one error line too, as for `subscriber import`
    assert op25b("acl", "diff", "--vendor", "junos", "--against", "on\x00router.txt", expect=2) == [
        "error: --against 'on\\x00router.txt': not a usable file name"
    ]
    assert op25b("acl", "render", "--vendor", "junos", "-o", "out\x00.txt", expect=2) == [
        "error: -o 'out\\x00.txt': not a usable file name"
    ]
    assert op25b("acl", "diff", "--vendor", "junos", "--against", str(on_router), "--expiring-within", "soon", expect=2) == [
        "error: 'soon' is not a duration like 90m, 12h, 30d or 2w"
    ]


def test_export_dynamic_ranges(op25b: Op25b) -> None:
    op25b.config.write_text(
        op25b.config.read_text().replace(
            'static_pools = ["203.0.113.0/24"]',
            'static_pools = ["100.64.0.192/26"]\ndynamic_pools = ["100.64.0.0/24", "2001:db8:d::/48"]',
        )
    )
    op25b("subscriber", "add", "shop@isp.example", "--static", "100.64.0.7")
    assert op25b("export", "dynamic-ranges")[0].splitlines() == [
        "prefix,comment",
        "100.64.0.0/30,dynamic (policy.dynamic_pools 100.64.0.0/24, less 2 static block(s))",
        "100.64.0.4/31,dynamic (policy.dynamic_pools 100.64.0.0/24, less 2 static block(s))",
        "100.64.0.6/32,dynamic (policy.dynamic_pools 100.64.0.0/24, less 2 static block(s))",
        "100.64.0.8/29,dynamic (policy.dynamic_pools 100.64.0.0/24, less 2 static block(s))",
        "100.64.0.16/28,dynamic (policy.dynamic_pools 100.64.0.0/24, less 2 static block(s))",
        "100.64.0.32/27,dynamic (policy.dynamic_pools 100.64.0.0/24, less 2 static block(s))",
        "100.64.0.64/26,dynamic (policy.dynamic_pools 100.64.0.0/24, less 2 static block(s))",
        "100.64.0.128/26,dynamic (policy.dynamic_pools 100.64.0.0/24, less 2 static block(s))",
        "2001:db8:d::/48,dynamic (policy.dynamic_pools 2001:db8:d::/48)",
    ]
    data = json.loads(op25b("export", "dynamic-ranges", "--format", "json")[0])
    assert data == op25b.json("export", "dynamic-ranges")
    assert len(data["ranges"]) == 9


def test_export_ptr_check(op25b: Op25b, tmp_path: Path) -> None:
    op25b.config.write_text(
        op25b.config.read_text().replace(
            'static_pools = ["203.0.113.0/24"]', 'static_pools = []\ndynamic_pools = ["100.64.0.0/24"]'
        )
    )
    op25b("subscriber", "add", "shop@isp.example", "--static", "100.64.0.9")
    zone = tmp_path / "0.64.100.in-addr.arpa.zone"
    zone.write_text(
        "$ORIGIN 0.64.100.in-addr.arpa.\n"
        "1 IN PTR dyn-100-64-0-1.isp.example.\n"
        "2 IN PTR mail.customer.example.\n"
        "9 IN PTR dyn-100-64-0-9.isp.example. ; static, looks dynamic\n"
    )
    pattern = r"^dyn-\d+-\d+-\d+-\d+\.isp\.example$"
    data = op25b.json("export", "ptr-check", "--pattern", pattern, "--zone", str(zone))
    assert (data["dynamic"], data["matched"]) == (2, 1)
    assert data["unmatched"] == [{"address": "100.64.0.2", "line": 3, "name": "mail.customer.example."}]
    assert [r["address"] for r in data["static_matched"]] == ["100.64.0.9"]
    text = op25b("export", "ptr-check", "--pattern", pattern, "--zone", str(zone))[0]
    assert text.splitlines()[0] == f"{zone}: 1 of 2 dynamic reverse names match '{pattern}'"
    assert op25b("export", "ptr-check", "--pattern", "(", "--zone", str(zone), expect=2)[0].startswith(
        "error: --pattern '(' is not a regular expression"
    )


def test_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["acl", "render", "--help"])
    out = capsys.readouterr().out
    assert "aggregated into the fewest" in out and "nftables" in out and "-o FILE" in out
