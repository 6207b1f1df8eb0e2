"""One list + watch per kind for the whole namespace: the service's cache of labkit Jobs and pods.

Like client-go's informer: list once, then watch from the list's resource version; a
410 Gone (or a restart) lists again; a watch ERROR 5xx waits with bounded backoff. Every
user's status is read from this cache, so the number of API requests does not grow with
users or with how often they look.

Nothing from the wire can end the thread: an event that is not a well-formed event (not
JSON, not an object, an unknown type, no string name, ...) is skipped, logged and counted
(``stats["malformed"]``); an unexpected exception is logged with its traceback, counted
(``stats["unexpected"]``), waited out and followed by a list.

Relisting: the loop lists again (``resource_version = ""``) after a 410 Gone, after an
unexpected exception, after a malformed event (it may have hidden a change) and from the
second error in a row on (one transient error resumes from the resource version; a longer
streak may have outlived the server's watch window). Lists start at least
``relist_interval`` apart, so a flood of malformed events is not a flood of lists.

Currency: ``last_sync`` is the monotonic time the cache was last known current: a list,
any watch event or bookmark, a watch that ended quietly at its timeout. An error streak
ends only when a watch delivers again (not when a list succeeds), so health does not
flicker while every watch fails; the first watch after a streak is short (``PROBATION``)
so that recovery shows soon even in a quiet namespace. :meth:`Informer.health` is what
the readiness probe reports; :meth:`Informer.is_current` tells a caller when to read the
API directly instead.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, NamedTuple

from urllib3.exceptions import ReadTimeoutError

from labkit.runners.cluster import api
from labkit.runners.cluster.errors import ClusterError, ClusterGone
from labkit.runners.cluster.follow import _lines

logger = logging.getLogger(__name__)

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")  # a tuple: a type from the wire may be unhashable
PROBATION = 5.0  # seconds: the longest watch right after an error streak


class Health(NamedTuple):
    """``ok, reason = informer.health()``; ``bool(health)`` is ``ok`` (not "the tuple is not empty")."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


class Informer:
    """A thread keeping ``objects`` (name -> object dict) equal to what ``list_fn`` lists in ``namespace``."""

    def __init__(self, list_fn: Callable[..., Any], namespace: str, label_selector: str, what: str, *,
                 on_change: Callable[[dict[str, Any]], None] | None = None, watch_timeout: float = 60.0,
                 max_backoff: float = 30.0, max_age: float | None = None, relist_interval: float = 5.0,
                 index: Callable[[dict[str, Any]], str | None] | None = None) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.label_selector = label_selector
        self.what = what
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        #: how old ``last_sync`` may be for health() to be ok: two quiet watches and a margin by default
        self.max_age = 2 * watch_timeout + 10 if max_age is None else max_age
        self.relist_interval = relist_interval
        self.objects: dict[str, dict[str, Any]] = {}
        #: like client-go's Indexer: ``index(obj)`` -> key (the owner, say), kept with ``objects``,
        #: so :meth:`indexed` answers one user's objects without a pass over the whole namespace
        self.index = index
        self._by_key: dict[str | None, dict[str, dict[str, Any]]] = {}
        self.resource_version = ""
        self.lock = threading.Lock()
        self.ready = threading.Event()
        #: lists (first one and relists), watches (and how many ended quietly or were cut), errors waited
        #: out (of which unexpected exceptions), malformed events and list items skipped
        self.stats = {"lists": 0, "watches": 0, "renewed": 0, "errors": 0, "unexpected": 0, "malformed": 0}
        #: monotonic time the cache was last known current (0.0: never)
        self.last_sync = 0.0
        self.last_error = ""  # the latest error, shortened, for health()'s reason
        self._errors = 0  # in the current streak
        self._failing_since: float | None = None
        self._listed_at = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{what}", daemon=True)

    def start(self) -> "Informer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.objects.values())

    def get(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.objects.get(name)

    def indexed(self, key: str) -> list[dict[str, Any]]:
        """The objects whose ``index(obj)`` is ``key`` (needs ``index``)."""
        with self.lock:
            return list(self._by_key.get(key, {}).values())

    def remember(self, obj: dict[str, Any]) -> None:
        """Put what this process just created in the cache at once (read your own writes); the watch refines it."""
        name = obj["metadata"]["name"]
        with self.lock:
            if name not in self.objects:
                self._put(name, obj)
        self._changed(obj)

    def forget(self, name: str) -> None:
        """Drop what this process just deleted (its DELETED event may come later)."""
        with self.lock:
            obj = self._drop(name)
        if obj is not None:
            self._changed(obj)

    # -- the cache and its index (callers hold the lock) ------------------------------------------
    def _key(self, obj: dict[str, Any]) -> str | None:
        if self.index is None:
            return None
        try:
            return self.index(obj)
        except Exception:  # an index must never stop the cache
            logger.exception("index of %s failed", self.what)
            return None

    def _put(self, name: str, obj: dict[str, Any]) -> None:
        old = self.objects.get(name)
        if old is not None:
            self._by_key.get(self._key(old), {}).pop(name, None)
        self.objects[name] = obj
        self._by_key.setdefault(self._key(obj), {})[name] = obj

    def _drop(self, name: str) -> dict[str, Any] | None:
        obj = self.objects.pop(name, None)
        if obj is not None:
            self._by_key.get(self._key(obj), {}).pop(name, None)
        return obj

    def _replace(self, fresh: dict[str, dict[str, Any]]) -> None:
        self.objects = fresh
        self._by_key = {}
        for name, obj in fresh.items():
            self._by_key.setdefault(self._key(obj), {})[name] = obj

    # -- currency ----------------------------------------------------------------------------
    def health(self, max_age: float | None = None) -> Health:
        """Ok only if the thread runs, it has listed, it is not failing and it synced within ``max_age``
        seconds (default: :attr:`max_age`); else the reason, one sentence naming ``what``."""
        max_age = self.max_age if max_age is None else max_age
        now = time.monotonic()
        errors, since = self._errors, self._failing_since
        if self._stop.is_set() or not self.alive:
            return Health(False, f"{self.what}: informer thread {'stopped' if self._stop.is_set() else 'not running'}")
        if not self.ready.is_set():
            last = f" (last error: {self.last_error})" if self.last_error else ""
            return Health(False, f"{self.what}: never listed yet{last}")
        if errors and since is not None:
            return Health(False, f"{self.what}: watch failing for {now - since:.0f} s "
                                 f"({errors} error{'s' if errors > 1 else ''}; last: {self.last_error})")
        age = now - self.last_sync
        if age > max_age:
            return Health(False, f"{self.what}: no news from the cluster for {age:.0f} s (more than {max_age:g} s)")
        return Health(True, f"{self.what}: current (synced {age:.1f} s ago)")

    @property
    def alive(self) -> bool:
        """Whether the thread runs (it ends only after :meth:`stop`, or on a bug no ``except Exception`` catches)."""
        return self._thread.is_alive()

    def is_current(self, max_age: float | None = None) -> bool:
        """Whether the cache can be trusted now; if not, read the API directly."""
        return self.health(max_age).ok

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.resource_version:
                    if self._stop.wait(max(0.0, self._listed_at + self.relist_interval - time.monotonic())):
                        return
                    self._list()
                self._watch()
            except ClusterGone:
                logger.info("watch of %s expired (410 Gone); listing again", self.what)
                self.resource_version = ""
            except (ClusterError, *api.CONNECTION_ERRORS, ValueError) as err:
                self._failed(err, expected=True)
            except Exception as err:  # a bug, or an answer nobody foresaw: never the end of the cache
                self._failed(err, expected=False)

    def _failed(self, err: Exception, *, expected: bool) -> None:
        self.last_error = _short(str(err) if expected else f"{type(err).__name__}: {err}", 200, quote=False)
        if self._failing_since is None:  # set before the counts: whoever sees a count sees the streak
            self._failing_since = time.monotonic()
        self._errors += 1
        self.stats["errors"] += 1
        if self._errors > 1 or not expected:
            self.resource_version = ""  # what happened meanwhile may be lost: list again
        delay = min(self.max_backoff, 0.2 * 2 ** min(self._errors, 8))
        if expected:
            logger.warning("watch of %s failed (%s); again in %.1f s", self.what, err, delay)
        else:
            self.stats["unexpected"] += 1
            logger.exception("informer of %s failed unexpectedly; listing again in %.1f s", self.what, delay)
        self._stop.wait(delay)

    def _delivering(self) -> None:
        """The watch is connected and the cache current: any error streak is over."""
        self.last_sync = time.monotonic()
        self._errors = 0
        self._failing_since = None

    def _malformed(self, what: str, raw: Any) -> None:
        self.stats["malformed"] += 1
        logger.warning("%s: skipped a malformed %s: %s", self.what, what, _short(raw, 200))

    def _list(self) -> None:
        self._listed_at = time.monotonic()
        resp = api.call(self.list_fn, self.namespace, label_selector=self.label_selector, _preload_content=False,
                        what=f"list {self.what}", retries=2)
        try:
            listed = json.loads(resp.data)
        finally:
            resp.release_conn()
        fresh: dict[str, dict[str, Any]] = {}
        for obj in listed.get("items") or []:  # not an object, items not a list: unexpected, listed again
            name = _meta(obj, "name")
            if name is None:
                self._malformed("list item", obj)
            else:
                fresh[name] = obj
        self.stats["lists"] += 1
        with self.lock:
            changed = [o for n, o in fresh.items() if self.objects.get(n) != o]
            gone = [o for n, o in self.objects.items() if n not in fresh]
            self._replace(fresh)
            self.resource_version = _meta(listed, "resourceVersion") or ""
        self.last_sync = time.monotonic()
        self.ready.set()
        for obj in changed + gone:
            self._changed(obj)

    def _watch(self) -> None:
        self.stats["watches"] += 1
        timeout = min(self.watch_timeout, PROBATION) if self._errors else self.watch_timeout
        resp = api.call(self.list_fn, self.namespace, label_selector=self.label_selector, watch=True,
                        allow_watch_bookmarks=True, resource_version=self.resource_version,
                        timeout_seconds=max(1, int(timeout)), _preload_content=False,
                        _request_timeout=(10.0, timeout + 2), what=f"watch {self.what}", retries=2)
        try:
            for line in _lines(resp):
                if self._stop.is_set():
                    return
                if line.strip() and not self._apply(line):
                    self.resource_version = ""  # the skipped event may have been a change: list again
                    return
            self._delivering()  # the server ended a quiet watch at its timeout
            self.stats["renewed"] += 1
        except ReadTimeoutError:  # quiet for longer than the timeout (a server that does not end it)
            self._delivering()
            self.stats["renewed"] += 1
        except api.CONNECTION_ERRORS as err:  # a cut stream: watch again from where it was
            logger.debug("watch of %s ended (%s); renewing", self.what, type(err).__name__)
            self.stats["renewed"] += 1
        finally:
            resp.release_conn()

    def _apply(self, line: str) -> bool:
        """Apply one watch event to the cache; False (and counted) if it is malformed. ERROR events raise."""
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if kind == "ERROR":
            status = obj if isinstance(obj, dict) else {}
            if status.get("code") == 410:
                raise ClusterGone(str(status.get("message")))
            raise ClusterError(f"the watch answered {status.get('code')} ({status.get('message')})")
        if kind not in EVENT_TYPES or _meta(obj, "resourceVersion" if kind == "BOOKMARK" else "name") is None:
            self._malformed(f"watch event (type {_short(kind, 40)})", line)
            return False
        self._delivering()
        if kind != "BOOKMARK":
            name = _meta(obj, "name")
            with self.lock:  # an event that changes nothing (a replayed ADDED, a late DELETED) is not told
                if kind == "DELETED":
                    news = self._drop(name) is not None
                else:
                    news = self.objects.get(name) != obj
                    self._put(name, obj)
            if news:
                self._changed(obj)
        self.resource_version = _meta(obj, "resourceVersion") or self.resource_version
        return True

    def _changed(self, obj: dict[str, Any]) -> None:
        if self.on_change is not None:
            try:
                self.on_change(obj)
            except Exception:  # a listener must never stop the cache
                logger.exception("listener of %s failed", self.what)


def _meta(obj: Any, key: str) -> str | None:
    """``obj["metadata"][key]`` if it is a non-empty string: nothing from the wire is trusted."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    value = meta.get(key) if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


def _short(value: Any, limit: int, *, quote: bool = True) -> str:
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def wait_ready(*informers: Informer, timeout: float = 30.0) -> None:
    """Block until every informer has listed once."""
    deadline = time.monotonic() + timeout
    for inf in informers:
        if not inf.ready.wait(max(0.0, deadline - time.monotonic())):
            raise ClusterError(f"Cannot list {inf.what}: the cluster did not answer within {timeout:.0f} s")
