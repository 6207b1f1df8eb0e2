"""Fair use of one shared service: per-user limits, and pools that one user cannot fill.

Log follows and long-polls hold a connection (and a follow holds a thread) for minutes,
so each user may hold only a few at once; beyond that the answer is 429 with
``Retry-After``, naming the limit. Follows run on their own thread pool, so however many
there are, the pool that submits, cancels and reads for everyone stays free.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Iterator

from .identity import Refused


@dataclass(frozen=True)
class Limits:
    """The service's limits (the defaults suit a lab hub of a few hundred users)."""

    #: log follows (``GET api/runs/<name>/log?follow=1``) one user may hold at once
    follows_per_user: int = 4
    #: long-polls (``?wait=``) one user may hold at once
    polls_per_user: int = 8
    #: threads streaming logs, for everyone (a follow beyond them is refused with 429)
    follow_threads: int = 64
    #: threads for short Kubernetes calls (submit, cancel, direct reads), never used by follows
    api_threads: int = 16
    #: the largest request body, in bytes
    max_body_bytes: int = 1 << 20
    #: the deepest nesting of JSON arrays and objects in a body
    max_body_depth: int = 16
    #: what ``Retry-After`` says when a limit is reached, in seconds
    retry_after: int = 5


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
