"""Failed-login limits per account and per client address, in bounded memory.

Each key keeps the times of its recent failures (at most ``limit`` of them); the least
recently touched keys are forgotten once ``max_keys`` is reached, so a flood of made-up
emails or addresses cannot grow memory. Limits are per process: with several instances
an attacker gets the limit once per instance, which still caps guessing to a few
attempts a minute."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20
WINDOW_SECONDS = 15 * 60
MAX_KEYS = 10_000


@dataclass
class FailureWindow:
    """At most ``limit`` failures per key within ``window`` seconds."""

    limit: int
    window: float
    max_keys: int = MAX_KEYS
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def is_blocked(self, key: str) -> bool:
        with self._lock:
            recent = self._recent(key)
            return recent is not None and len(recent) >= self.limit

    def record_failure(self, key: str) -> None:
        with self._lock:
            recent = self._recent(key)
            if recent is None:
                recent = deque(maxlen=self.limit)
                self._failures[key] = recent
                self._evict()
            recent.append(self.clock())
            self._failures.move_to_end(key)

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, key: str) -> deque[float] | None:
        recent = self._failures.get(key)
        if recent is None:
            return None
        cutoff = self.clock() - self.window
        while recent and recent[0] <= cutoff:
            recent.popleft()
        if not recent:
            del self._failures[key]
            return None
        return recent

    def _evict(self) -> None:
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)


@dataclass
class LoginLimiter:
    accounts: FailureWindow
    addresses: FailureWindow

    def is_blocked(self, email: str, address: str) -> bool:
        return self.accounts.is_blocked(email) or self.addresses.is_blocked(address)

    def record_failure(self, email: str, address: str) -> None:
        self.accounts.record_failure(email)
        self.addresses.record_failure(address)

    def record_success(self, email: str) -> None:
        self.accounts.reset(email)


def new_login_limiter() -> LoginLimiter:
    return LoginLimiter(
        accounts=FailureWindow(ACCOUNT_LIMIT, WINDOW_SECONDS),
        addresses=FailureWindow(ADDRESS_LIMIT, WINDOW_SECONDS),
    )
