"""Fair use of one shared service: per-user limits, and pools that one user cannot fill.

Log follows and long-polls hold a connection (and a follow holds a thread) for minutes,
so each user may hold only a few at once; beyond that the answer is 429 with
``Retry-After``, naming the limit. Follows run on their own thread pool, so however many
there are, the pool that submits, cancels and reads for everyone stays free. The limits
are the admin's :class:`~labkit.runners.cluster.settings.HubSettings` (``hub:`` in the settings).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from labkit.hub.identity import Refused


class Slots:
    """How many of one kind of long request each user holds; :meth:`hold` refuses past ``per_user`` or ``total``."""

    def __init__(self, what: str, per_user: int, total: int | None = None, retry_after: int = 5) -> None:
        self.what = what
        self.per_user = per_user
        self.total = total
        self.retry_after = retry_after
        self.held: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, user: str) -> Iterator[None]:
        with self._lock:
            mine = self.held.get(user, 0)
            if mine >= self.per_user:
                raise self._refuse(f"you already hold {mine} {self.what} (the limit is {self.per_user} per user); "
                                   "close one, or try again later")
            if self.total is not None and sum(self.held.values()) >= self.total:
                raise self._refuse(f"the service holds {self.total} {self.what} for everyone (its limit); "
                                   "try again later")
            self.held[user] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                left = self.held[user] - 1
                if left:
                    self.held[user] = left
                else:
                    del self.held[user]

    def _refuse(self, message: str) -> Refused:
        return Refused(429, message, {"Retry-After": str(self.retry_after)})
