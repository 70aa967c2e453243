"""Log lines that a flood cannot multiply: one line per cause per interval, and the count of
the ones held back in the next. Every path that an outsider can trigger per packet (drops,
forged replies, abandoned requests, tracebacks) logs through one of these."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL = 10.0  # seconds between two lines of one cause


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.interval, self.clock = logger, interval, clock
        self._last: dict[str, tuple[float, int]] = {}  # cause -> (when logged, held back since)

    def log(self, level: int, cause: str, message: str, *args: object, exc_info: bool = False) -> bool:
        """Log `message % args` unless `cause` was logged less than `interval` ago; True if it was."""
        now = self.clock()
        last, held = self._last.get(cause, (float("-inf"), 0))
        if now - last < self.interval:
            self._last[cause] = (last, held + 1)
            return False
        self._last[cause] = (now, 0)
        if held:
            message += " (+%d more since the last report)"
            args = (*args, held)
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, cause: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, cause, message, *args)

    def exception(self, cause: str, message: str, *args: object) -> bool:
        """An error with its traceback, at most once per interval per cause."""
        return self.log(logging.ERROR, cause, message, *args, exc_info=True)
