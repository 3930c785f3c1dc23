"""What the Graph emulator counts and remembers: its throttling limits and windows, and the log of
the requests it answered, with the queries the tests and the benchmark ask of it (the most
requests in any second per bucket or resource, the shortest gap on one resource)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from devtools.loopback import max_in_window


@dataclass
class Limits:
    bucket_rps: int = 30  # per app per tenant, per bucket
    directory_rps: int = 100
    chat_rps: int = 1  # per chat, any request
    team_rps: int = 4  # per team, any request
    user_list_chats_rps: int = 5
    retry_after: int | None = 10  # seconds; None: the time until the request would be admitted (at least 1)
    window: float = 1.0
    enabled: bool = True


@dataclass
class Request:
    t: float
    method: str
    kind: str
    bucket: str
    status: int = 0
    chat: str | None = None
    user: str | None = None
    team: str | None = None
    throttled_by: str | None = None  # for a 429: the limit it hit (a bucket, "chat", "team" or "user")


@dataclass
class _Window:
    limit: int
    times: deque = field(default_factory=deque)


class Throttle:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def admit(self, keys: list[tuple[str, int]], now: float) -> tuple[float, str | None]:
        """All windows have room: count the request in each and return (0, None). Otherwise count it
        nowhere and return how long until it would be admitted, and the key of the fullest window."""
        if not self.limits.enabled:
            return 0.0, None
        with self._lock:
            windows, wait, blocked = [], 0.0, None
            for key, limit in keys:
                window = self._windows.setdefault(key, _Window(limit))
                while window.times and window.times[0] <= now - self.limits.window:
                    window.times.popleft()
                if len(window.times) >= limit and window.times[-limit] + self.limits.window - now > wait:
                    wait, blocked = window.times[-limit] + self.limits.window - now, key
                windows.append(window)
            if wait:
                return wait, blocked
            for window in windows:
                window.times.append(now)
            return 0.0, None


class RequestLog:
    """Queries over the requests Graph answered; `requests()` gives them."""

    def requests(self, kind: str | None = None, status: int | None = None) -> list[Request]:
        raise NotImplementedError

    def max_per_window(self, bucket: str, window: float = 1.0) -> int:
        """The most requests Graph accepted from this bucket in any `window` seconds."""
        return max_in_window([r.t for r in self.requests() if r.bucket == bucket and r.status != 429], window)

    def min_chat_gap(self) -> float:
        """The shortest time between two accepted requests on the same chat."""
        return self.min_gap("chat")

    def min_gap(self, attr: str = "chat") -> float:
        """The shortest time between two accepted requests on the same resource (`attr`: chat, team or user)."""
        last: dict[str, float] = {}
        gap = float("inf")
        for r in sorted(self.requests(), key=lambda r: r.t):
            resource = getattr(r, attr)
            if resource and r.status != 429:
                if resource in last:
                    gap = min(gap, r.t - last[resource])
                last[resource] = r.t
        return gap

    def max_per_resource_window(self, attr: str = "team", window: float = 1.0) -> int:
        """The most accepted requests on any one resource (`attr`: chat, team or user) in any `window` seconds."""
        times: dict[str, list[float]] = {}
        for r in self.requests():
            if getattr(r, attr) and r.status != 429:
                times.setdefault(getattr(r, attr), []).append(r.t)
        return max((max_in_window(t, window) for t in times.values()), default=0)
