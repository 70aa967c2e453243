"""radius_op25b.logs: one line per cause per interval, with the count held back."""

from __future__ import annotations

import logging

from radius_op25b.logs import RateLimitedLog


def test_a_flood_is_one_line_per_cause_per_interval(caplog) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "t"):
        for i in range(25_000):
            now[0] = i * 0.001  # 25,000 datagrams in 25 s
            limited.warning("malformed", "dropped %d", i)
            limited.warning("unknown_client", "dropped %d", i)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6  # two causes, at 0, 10 and 20 s
    assert lines[0] == "dropped 0"
    assert lines[2] == "dropped 10000 (+9999 more since the last report)"
