"""Our RADIUS dictionary: pyrad 2.6.0 loads it cleanly, every attribute survives a packet round
trip, and every name, number, type, flag and VALUE agrees with FreeRADIUS's dictionaries."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pathlib
import shutil
import warnings
from typing import Any

import pyrad.dictionary
import pyrad.tools
import pytest
from pyrad import packet

from radius_op25b.radius import dictionary as op25b_dictionary
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
OUR_MAIN = REPO / "dictionaries" / "dictionary"
FREERADIUS_MAIN = pathlib.Path("/usr/share/freeradius/dictionary")

# FreeRADIUS data types pyrad 2.6.0 cannot express, and what our files say instead.
# vsa: pyrad skips "vsa" attributes with a warning; "octets" keeps Vendor-Specific usable
# for raw values while pyrad still splits well-formed VSAs itself.
PYRAD_TYPE_FOR = {"vsa": "octets"}

# Words that make a 5th ATTRIBUTE column a flag list rather than a vendor name.
_FLAG_WORDS = {"has_tag", "encrypt", "array", "concat", "virtual", "secret"}


# --- a small, tolerant reader for FreeRADIUS-syntax dictionaries ----------------------------


@dataclasses.dataclass(frozen=True)
class AttrDef:
    name: str
    vendor: int  # 0 for a standard attribute
    number: str  # normalised: decimal, dotted for TLV members ("59.1")
    type: str  # as written, including a size suffix ("octets[50]")
    flags: frozenset[str]
    vendor_format: str  # "format=" of the BEGIN-VENDOR block (RFC 6929 extended VSAs), or ""
    where: str  # file:line, for messages


@dataclasses.dataclass
class DictFiles:
    attrs: dict[str, list[AttrDef]] = dataclasses.field(default_factory=dict)
    values: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    vendors: dict[str, int] = dataclasses.field(default_factory=dict)
    vendor_formats: dict[str, str] = dataclasses.field(default_factory=dict)  # "1,1" if unsaid


def _int(text: str) -> int:
    return int(text, 16) if text.lower().startswith("0x") else int(text, 10)


def _number(text: str) -> str:
    return ".".join(str(_int(part)) for part in text.split("."))


def read_dictionaries(main: pathlib.Path) -> DictFiles:
    """Read main and what it $INCLUDEs: VENDOR, BEGIN/END-VENDOR, BEGIN/END-TLV, ATTRIBUTE,
    VALUE. Other keywords are ignored; VALUE numbers that are not integers are skipped."""
    out = DictFiles()
    seen: set[pathlib.Path] = set()

    def read(path: pathlib.Path) -> None:
        path = path.resolve()
        if path in seen:
            return
        seen.add(path)
        vendor, vendor_format = 0, ""
        tlv_stack: list[str] = []  # numbers of the enclosing TLVs
        tlv_numbers: dict[str, str] = {}  # TLV name -> its number
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            tokens = line.split("#", 1)[0].split()
            if not tokens:
                continue
            keyword, where = tokens[0].upper(), f"{path.name}:{lineno}"
            if keyword in ("$INCLUDE", "$INCLUDE-") and len(tokens) >= 2:
                target = path.parent / tokens[1]
                if target.exists() or keyword == "$INCLUDE":
                    read(target)
            elif keyword == "VENDOR" and len(tokens) >= 3:
                out.vendors[tokens[1]] = _int(tokens[2])
                options = [t[len("format=") :] for t in tokens[3:] if t.startswith("format=")]
                out.vendor_formats[tokens[1]] = options[0] if options else "1,1"
            elif keyword == "BEGIN-VENDOR" and len(tokens) >= 2:
                vendor = out.vendors[tokens[1]]
                vendor_format = " ".join(t for t in tokens[2:] if t.startswith("format="))
            elif keyword == "END-VENDOR":
                vendor, vendor_format = 0, ""
            elif keyword == "BEGIN-TLV" and len(tokens) >= 2:
                tlv_stack.append(tlv_numbers[tokens[1]])
            elif keyword == "END-TLV" and tlv_stack:
                tlv_stack.pop()
            elif keyword == "ATTRIBUTE" and len(tokens) >= 4:
                name, number, datatype = tokens[1], _number(tokens[2]), tokens[3]
                attr_vendor, flags = vendor, frozenset[str]()
                if len(tokens) >= 5:
                    words = tokens[4].split(",")
                    if any(w.split("=")[0] in _FLAG_WORDS for w in words):
                        flags = frozenset(words)
                    elif tokens[4] in out.vendors:  # old style: vendor name in column 5
                        attr_vendor = out.vendors[tokens[4]]
                    else:
                        flags = frozenset(words)
                if tlv_stack:
                    number = f"{tlv_stack[-1]}.{number}"
                if datatype == "tlv":
                    tlv_numbers[name] = number
                out.attrs.setdefault(name, []).append(AttrDef(name, attr_vendor, number, datatype, flags, vendor_format, where))
            elif keyword == "VALUE" and len(tokens) >= 4:
                try:
                    out.values.setdefault(tokens[1], {})[tokens[2]] = _int(tokens[3])
                except ValueError:
                    pass

    read(main)
    return out


@pytest.fixture(scope="module")
def ours() -> DictFiles:
    return read_dictionaries(OUR_MAIN)


@pytest.fixture(scope="module")
def freeradius() -> DictFiles:
    if not FREERADIUS_MAIN.is_file():
        pytest.fail(
            f"{FREERADIUS_MAIN} is missing: install Debian's freeradius-common "
            "(apt-get install freeradius-common) to cross-check our dictionary"
        )
    return read_dictionaries(FREERADIUS_MAIN)


def _load_with_pyrad(path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> tuple[pyrad.dictionary.Dictionary, list[str]]:
    """Load a dictionary with pyrad; return it and every warning (logged or warnings.warn)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="pyrad"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pyrad.dictionary.Dictionary(str(path))
    problems = [
        f"{r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("pyrad") and (r.levelno >= logging.WARNING or "skipping" in r.getMessage())
    ]
    problems += [f"warning: {w.message}" for w in caught]
    return loaded, problems


# --- (a) pyrad loads our files with no warning and no skipped attribute ------------------------


def test_pyrad_loads_our_dictionary_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    loaded, problems = _load_with_pyrad(OUR_MAIN, caplog)
    assert problems == []
    assert loaded.skipped_attributes == set()
    assert len(loaded.attributes) > 100


def test_every_file_is_packaged_and_included() -> None:
    # package data glob is "dictionary*"; an unincluded file would be dead weight
    files = {p.name for p in OUR_MAIN.parent.iterdir() if p.is_file() and p.name != "__init__.py"}
    assert all(name.startswith("dictionary") for name in files), files
    included = {line.split()[1] for line in OUR_MAIN.read_text().splitlines() if line.startswith("$INCLUDE")}
    assert files == included | {"dictionary"}


def test_pyrad_and_our_reader_agree(ours: DictFiles) -> None:
    # the FreeRADIUS cross-check reads our files with the reader above; make sure that reader
    # sees exactly what pyrad sees, so the cross-check speaks for what the proxy will use
    loaded = op25b_dictionary.load_dictionary()
    assert set(loaded.attributes) == set(ours.attrs)
    for name, attr in loaded.attributes.items():
        [mine] = ours.attrs[name]
        assert (attr.code, loaded.vendors.GetForward(attr.vendor)) == (int(mine.number), mine.vendor), name
        assert attr.type == mine.type.split("[")[0], name
        assert attr.has_tag == ("has_tag" in mine.flags), name
        assert attr.encrypt == next((int(f.split("=")[1]) for f in mine.flags if f.startswith("encrypt=")), 0), name
        values = {key: attr.values.GetForward(key) for key in attr.values.forward}
        assert values == {key: pyrad.tools.EncodeAttr(attr.type, num) for key, num in ours.values.get(name, {}).items()}, name


def test_required_attributes_are_defined() -> None:
    loaded = op25b_dictionary.load_dictionary()
    required = {
        # standard attributes named in the brief / DESIGN.md §2-§3
        "User-Name",
        "User-Password",
        "CHAP-Password",
        "NAS-IP-Address",
        "NAS-Port",
        "Service-Type",
        "Framed-Protocol",
        "Framed-IP-Address",
        "Framed-IP-Netmask",
        "Filter-Id",
        "Framed-MTU",
        "Reply-Message",
        "State",
        "Class",
        "Vendor-Specific",
        "Session-Timeout",
        "Idle-Timeout",
        "Called-Station-Id",
        "Calling-Station-Id",
        "NAS-Identifier",
        "Proxy-State",
        "CHAP-Challenge",
        "NAS-Port-Type",
        "Port-Limit",
        "Acct-Status-Type",
        "Acct-Delay-Time",
        "Acct-Input-Octets",
        "Acct-Output-Octets",
        "Acct-Session-Id",
        "Acct-Authentic",
        "Acct-Session-Time",
        "Acct-Input-Packets",
        "Acct-Output-Packets",
        "Acct-Terminate-Cause",
        "Acct-Multi-Session-Id",
        "Acct-Link-Count",
        "Acct-Input-Gigawords",
        "Acct-Output-Gigawords",
        "Event-Timestamp",
        "EAP-Message",
        "Message-Authenticator",
        "Acct-Interim-Interval",
        "NAS-Port-Id",
        "Tunnel-Type",
        "Tunnel-Medium-Type",
        "Tunnel-Password",
        "Tunnel-Private-Group-Id",
        "NAS-IPv6-Address",
        "Framed-Interface-Id",
        "Framed-IPv6-Prefix",
        "Delegated-IPv6-Prefix",
        "Framed-IPv6-Address",
        "Delegated-IPv6-Prefix-Pool",
        "Error-Cause",
        "Chargeable-User-Identity",
        "NAS-Filter-Rule",
        "Operator-Name",
        # vendors, one per NAS profile
        "MS-CHAP-Response",
        "MS-CHAP-Error",
        "MS-CHAP-Challenge",
        "MS-MPPE-Encryption-Policy",
        "MS-MPPE-Encryption-Types",
        "MS-MPPE-Send-Key",
        "MS-MPPE-Recv-Key",
        "MS-CHAP2-Response",
        "MS-CHAP2-Success",
        "Cisco-AVPair",
        "Cisco-Account-Info",
        "ERX-Ingress-Policy-Name",
        "ERX-Egress-Policy-Name",
        "ERX-IPv6-Ingress-Policy-Name",
        "ERX-IPv6-Egress-Policy-Name",
        "ERX-Service-Activate",
        "Huawei-Data-Filter",
        "Alc-Subsc-Prof-Str",
        "Alc-SLA-Prof-Str",
        "Alc-Subscriber-Filter",
        "Alc-Nas-Filter-Rule-Shared",
        "Mikrotik-Address-List",
    }
    assert required - set(loaded.attributes) == set()
    # the salted attributes must keep FreeRADIUS's flags, or pyrad would send them in clear
    assert (loaded["Tunnel-Password"].has_tag, loaded["Tunnel-Password"].encrypt) == (True, 2)
    assert loaded["MS-MPPE-Send-Key"].encrypt == loaded["MS-MPPE-Recv-Key"].encrypt == 2
    assert loaded["ERX-Service-Activate"].has_tag


# --- round trip: every attribute built by name, encoded, decoded back ------------------------

SECRET = b"op25b-test-secret"


def _sample(name: str, attr: pyrad.dictionary.Attribute, declared_type: str) -> Any:
    """A valid value of the attribute, in the form pyrad hands back after decoding."""
    if attr.values.forward:
        return sorted(attr.values.forward)[0]  # a named VALUE
    if name == "Vendor-Specific":
        return b"\x00\x00\x00\x09\x01"  # too short for a VSA, so pyrad keeps it raw
    if declared_type.startswith("octets["):
        return bytes(range(1, int(declared_type[7:-1]) + 1))
    return {
        "string": f"op25b {name}",
        "octets": b"\x00op25b\xff" + name.encode(),
        "integer": 1_000_000,
        "date": 1_700_000_000,
        "ipaddr": "192.0.2.25",
        "ipv6addr": "2001:db8::25",
        "ipv6prefix": "2001:db8:25::/48",
        "ifid": "211:22ff:fe33:4455",
    }[attr.type]


def _attribute_names() -> list[str]:
    return sorted(op25b_dictionary.load_dictionary().attributes)


@pytest.mark.parametrize("name", _attribute_names())
def test_attribute_round_trip(name: str, ours: DictFiles) -> None:
    loaded = op25b_dictionary.load_dictionary()
    attr = loaded[name]
    value = _sample(name, attr, ours.attrs[name][0].type)
    key = f"{name}:1" if attr.has_tag else name

    request = packet.AuthPacket(code=packet.AccessRequest, secret=SECRET, dict=loaded)
    request[key] = value
    raw = request.RequestPacket()

    # on the wire: one attribute, under the right number (inside a VSA for vendors)
    vendor_id = loaded.vendors.GetForward(attr.vendor)
    if vendor_id:
        assert (raw[20], int.from_bytes(raw[22:26], "big"), raw[26]) == (26, vendor_id, attr.code)
    else:
        assert raw[20] == attr.code
    if attr.encrypt == 2:  # salted by pyrad, so the plaintext must not be on the wire
        assert (value.encode() if isinstance(value, str) else value) not in raw

    decoded = packet.AuthPacket(packet=raw, secret=SECRET, dict=loaded)
    assert list(decoded.keys()) == [name]
    assert decoded[key] == [value]


def _rfc2548_decrypt(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """MS-MPPE-*-Key decryption written from RFC 2548 section 2.4.3, independent of pyrad."""
    salt, cipher = value[:2], value[2:]
    assert salt[0] & 0x80, "RFC 2548: the salt's most significant bit must be set"
    plain, previous = b"", request_authenticator + salt
    for i in range(0, len(cipher), 16):
        block = cipher[i : i + 16]
        pad = hashlib.md5(secret + previous).digest()
        plain += bytes(c ^ p for c, p in zip(block, pad, strict=False))
        previous = block
    return plain[1 : 1 + plain[0]]  # key-length octet, key, zero padding


def test_mppe_key_in_reply_is_rfc2548_salt_encrypted() -> None:
    # MS-MPPE keys travel in Access-Accepts, salted with the Request Authenticator; pyrad's
    # encrypt=2 (RFC 2868 salt) must produce exactly RFC 2548's encoding
    loaded = op25b_dictionary.load_dictionary()
    request = packet.AuthPacket(code=packet.AccessRequest, secret=SECRET, dict=loaded, User_Name="alice")
    request.RequestPacket()
    reply = request.CreateReply()  # an Access-Accept
    key = bytes(range(32))
    reply["MS-MPPE-Recv-Key"] = key
    raw = reply.ReplyPacket()

    vsas, rest = [], raw[20:]
    while rest:
        if rest[0] == 26:
            vsas.append(rest[2 : rest[1]])
        rest = rest[rest[1] :]
    [vsa] = vsas
    assert (int.from_bytes(vsa[:4], "big"), vsa[4]) == (311, 17)
    assert _rfc2548_decrypt(vsa[6:], SECRET, request.authenticator) == key

    received = packet.AuthPacket(packet=raw, secret=SECRET, dict=loaded)
    received.request_authenticator = request.authenticator
    assert received["MS-MPPE-Recv-Key"] == [key]


# --- (b) + (c) cross-check against FreeRADIUS --------------------------------------------------


def _describe(attr: AttrDef) -> str:
    text = f"{attr.where} vendor={attr.vendor} number={attr.number} type={attr.type} flags={','.join(sorted(attr.flags)) or '-'}"
    return f"{text} in a block with {attr.vendor_format}" if attr.vendor_format else text


def attribute_mismatches(ours: DictFiles, freeradius: DictFiles) -> list[str]:
    """One line per attribute of ours whose name, vendor, number, type or flags differ from
    FreeRADIUS's (every FreeRADIUS definition of that name must agree)."""
    problems: list[str] = []
    for name, [mine] in sorted(ours.attrs.items()):
        theirs = freeradius.attrs.get(name)
        if not theirs:
            problems.append(f"{name} ({mine.where}): no such attribute in FreeRADIUS")
            continue
        for fr in theirs:
            expected = (fr.vendor, fr.number, PYRAD_TYPE_FOR.get(fr.type, fr.type), fr.flags, fr.vendor_format)
            actual = (mine.vendor, mine.number, mine.type, mine.flags, mine.vendor_format)
            if actual != expected:
                problems.append(f"{name}: ours {_describe(mine)}; FreeRADIUS {_describe(fr)}")
    return problems


@pytest.mark.freeradius
def test_attributes_match_freeradius(ours: DictFiles, freeradius: DictFiles) -> None:
    problems = attribute_mismatches(ours, freeradius)
    assert problems == [], "\n".join(problems)


@pytest.mark.freeradius
def test_vendor_ids_match_freeradius(ours: DictFiles, freeradius: DictFiles) -> None:
    assert {name: freeradius.vendors.get(name) for name in ours.vendors} == ours.vendors
    # pyrad only encodes the RFC 2865 VSA layout (1-octet type, 1-octet length)
    assert (
        {name: freeradius.vendor_formats[name] for name in ours.vendors}
        == {name: "1,1" for name in ours.vendors}
        == ours.vendor_formats
    )


@pytest.mark.freeradius
def test_values_match_freeradius(ours: DictFiles, freeradius: DictFiles) -> None:
    problems = [
        f"VALUE {attr} {value} {number}: FreeRADIUS has {freeradius.values.get(attr, {}).get(value, 'no such VALUE')}"
        for attr, values in sorted(ours.values.items())
        for value, number in sorted(values.items())
        if freeradius.values.get(attr, {}).get(value) != number
    ]
    assert problems == [], "\n".join(problems)


@pytest.mark.freeradius
@pytest.mark.parametrize("attr", ["Error-Cause", "Acct-Terminate-Cause"])
def test_standard_value_lists_are_complete(attr: str, ours: DictFiles, freeradius: DictFiles) -> None:
    # FreeRADIUS defines only the RFC values for these two, so ours must be the same list
    assert ours.values[attr] == freeradius.values[attr]


def test_key_values_present_and_unambiguous(ours: DictFiles) -> None:
    expected = {
        "Acct-Status-Type": {"Start": 1, "Stop": 2, "Interim-Update": 3, "Accounting-On": 7, "Accounting-Off": 8},
        "Service-Type": {"Login-User": 1, "Framed-User": 2, "Authenticate-Only": 8, "Authorize-Only": 17},
        "Error-Cause": {
            "Unsupported-Attribute": 401,
            "Missing-Attribute": 402,
            "Invalid-Attribute-Value": 407,
            "Administratively-Prohibited": 501,
            "Session-Context-Not-Found": 503,
            "Multiple-Session-Selection-Unsupported": 508,
        },
        "Acct-Terminate-Cause": {
            "User-Request": 1,
            "Lost-Carrier": 2,
            "Idle-Timeout": 4,
            "Session-Timeout": 5,
            "Admin-Reset": 6,
            "NAS-Reboot": 11,
        },
    }
    for attr, values in expected.items():
        assert ours.values[attr].items() >= values.items(), attr
    # pyrad decodes a number to one name; two names for one number would make that arbitrary
    for attr, values in ours.values.items():
        assert len(set(values.values())) == len(values), attr


@pytest.mark.freeradius
@pytest.mark.parametrize(
    ("file", "keyword", "name", "column", "typo"),
    [
        ("dictionary.rfc", "ATTRIBUTE", "Filter-Id", 2, "12"),  # number
        ("dictionary.rfc", "ATTRIBUTE", "Framed-IP-Address", 3, "string"),  # type
        ("dictionary.erx", "ATTRIBUTE", "ERX-Service-Activate", 4, None),  # flag dropped
        ("dictionary.microsoft", "ATTRIBUTE", "MS-MPPE-Send-Key", 2, "15"),  # vendor number
        ("dictionary.mikrotik", "VENDOR", "Mikrotik", 2, "14989"),  # vendor id
    ],
)
def test_cross_check_catches_a_typo(
    tmp_path: pathlib.Path, freeradius: DictFiles, file: str, keyword: str, name: str, column: int, typo: str | None
) -> None:
    # copy our files, change one column of one line, and the cross-check must report it
    copy = tmp_path / "dictionaries"
    shutil.copytree(OUR_MAIN.parent, copy)
    path = copy / file
    lines = path.read_text().splitlines()
    [index] = [i for i, line in enumerate(lines) if line.split()[:2] == [keyword, name]]
    tokens = lines[index].split()
    if typo is None:
        del tokens[column]
    else:
        tokens[column] = typo
    lines[index] = " ".join(tokens)
    path.write_text("\n".join(lines) + "\n")
    assert attribute_mismatches(read_dictionaries(copy / "dictionary"), freeradius) != []


# --- radius_op25b.radius.dictionary ------------------------------------------------------------------


def test_dictionary_path_points_at_our_main_file() -> None:
    path = op25b_dictionary.dictionary_path()
    assert path.is_file()
    assert path.name == "dictionary"
    assert (path.parent / "dictionary.rfc").is_file()
    if path.resolve() != OUR_MAIN.resolve():  # an installed copy must be the same content
        assert path.read_bytes() == OUR_MAIN.read_bytes()


def test_dictionary_path_falls_back_to_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(package: str) -> None:
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(op25b_dictionary.importlib.resources, "files", not_installed)
    assert op25b_dictionary.dictionary_path() == OUR_MAIN.resolve()


def test_load_dictionary_is_cached() -> None:
    first = op25b_dictionary.load_dictionary()
    assert op25b_dictionary.load_dictionary() is first
    assert isinstance(first, pyrad.dictionary.Dictionary)
    assert first["Filter-Id"].code == 11
