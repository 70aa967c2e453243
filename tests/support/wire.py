"""Golden packets and the dictionary of the wire tests, from tests/data."""

from __future__ import annotations

from functools import cache

from pyrad.dictionary import Dictionary

from tests.support.paths import DATA_DIR


def load_hex(name: str) -> bytes:
    """A golden packet: hex octets, whitespace free-form, '#' starts a comment."""
    text = (DATA_DIR / name).read_text()
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in text.splitlines()))


@cache
def wire_dictionary() -> Dictionary:
    """pyrad's view of tests/data/wire_dictionary (read once)."""
    return Dictionary(str(DATA_DIR / "wire_dictionary"))
