"""A per-address limit on anonymous report submissions.

In-process, fixed one-hour windows: enough to stop one address flooding the queue from
a single worker. Behind a reverse proxy the address is the one the proxy puts in
X-Forwarded-For, believed only from the proxies in TAKEDOWN_FORWARDED_ALLOW_IPS (default
127.0.0.1 and ::1), so a client cannot choose its own; several workers each keep their
own count.
"""

from __future__ import annotations

import threading
import time

from fastapi import Request

from takedown.errors import TakedownError


class RateLimited(TakedownError):
    status = 429
    code = "rate_limited"


_WINDOW_S = 3600.0
_lock = threading.Lock()
_counts: dict[str, tuple[float, int]] = {}


def check_report_rate(request: Request, per_hour: int) -> None:
    address = request.client.host if request.client else "unknown"
    now = time.monotonic()
    with _lock:
        start, count = _counts.get(address, (now, 0))
        if now - start >= _WINDOW_S:
            start, count = now, 0
        if count >= per_hour:
            raise RateLimited(
                "Too many reports from this address; please try again later. If someone "
                "is in immediate danger, contact the police.",
            )
        _counts[address] = (start, count + 1)
        if len(_counts) > 100_000:  # forget old windows; bounded memory
            for key, (t, _) in list(_counts.items()):
                if now - t >= _WINDOW_S:
                    del _counts[key]


def reset() -> None:
    """Forget all counts (tests)."""
    with _lock:
        _counts.clear()
