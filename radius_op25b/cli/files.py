"""Files named on the command line: read as UTF-8 text (standard input for `-` where a command
allows it) or written, every failure one InvalidInput naming the option and the file. Imports
nothing heavy: cli/acl.py uses it at parse time's import."""

from __future__ import annotations

import sys
from pathlib import Path

from radius_op25b.errors import InvalidInput


def read_text(path: str, option: str = "", *, stdin: bool = False) -> str:
    """The text of `path` (`-`: standard input, when `stdin`); a BOM is dropped."""
    label = f"{option} {path}" if option else path
    try:
        if stdin and path == "-":
            return sys.stdin.buffer.read().decode("utf-8-sig")
        return Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"{label}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (ValueError, UnicodeError):  # a NUL byte or an unencodable character in the path
        raise InvalidInput(f"{option + ' ' if option else ''}{path!r}: not a usable file name") from None


def write_text(path: str, text: str, option: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise InvalidInput(f"{option} {path}: cannot write: {exc.strerror}") from None
    except (ValueError, UnicodeError):
        raise InvalidInput(f"{option} {path!r}: not a usable file name") from None
