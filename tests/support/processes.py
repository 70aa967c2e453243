"""Processes a test starts: started so that they die with pytest, stopped by their PID.

Nothing here (or anywhere in tests/) stops a process by name: a test stops exactly the
``subprocess.Popen`` it started, so a system FreeRADIUS or another user's ``op25b`` is never hit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

SETPRIV = shutil.which("setpriv")  # util-linux; optional

T = TypeVar("T")


def spawn(
    args: Sequence[str], output: str | os.PathLike[str], *, death_signal: str = "TERM", new_session: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``args`` with stdout and stderr appended to ``output``.

    With setpriv, the process gets ``death_signal`` when the thread that started it ends, so
    it does not outlive a SIGKILLed pytest (start processes from the main thread)."""
    if SETPRIV:
        args = [SETPRIV, "--pdeathsig", death_signal, "--", *args]
    with open(output, "ab") as out:
        return subprocess.Popen(
            list(args), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session
        )


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> int | None:
    """SIGTERM to ``proc``'s PID, SIGKILL after ``timeout`` seconds; its exit status (None: no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def wait_until(check: Callable[[], T], timeout: float, step: float = 0.1) -> T:
    """Call ``check`` until it returns something true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def read_text(path: Path) -> str:
    """A log file's text so far ("" before the process wrote it)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
