"""The `op25b` command: a plain `main(args)` over a separate parser builder (README: "The op25b command").

Commands are thin: parse, call one operation of the support desk (services/desk.py), print.
Exit 0 on success, 1 on an operational error, 2 on a usage error; errors are one `error:` line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from radius_op25b.cli.parser import build_parser
from radius_op25b.errors import Op25bError

MAX_ERROR = 1000  # characters of an error line


def one_line(text: str) -> str:
    """The message as one printable line: control characters (a newline in an echoed argument)
    escaped, unencodable ones replaced, and cut at MAX_ERROR characters."""
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR] + f"... ({len(text):,} characters)"


def main(args: Sequence[str] | None = None, *, now: datetime | None = None, out: Callable[[str], None] = print) -> int:
    """Run one command; `now` and `out` are there for tests (a fixed clock and the output).
    Without `now` the clock is read when each change is made, not when the process started."""
    try:
        parsed = build_parser().parse_args(args)
        from radius_op25b.cli import commands  # only now: SQLAlchemy and the rest load here

        command = getattr(commands, parsed.func)
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
        return int(command(commands.Context(parsed, clock, out)))
    except Op25bError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `op25b audit | head -1`: the reader left. Whatever else goes to stdout goes nowhere
        # (so the interpreter's own flush at exit cannot fail again); no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
