"""One list + watch per kind for the whole namespace: the service's cache of labkit Jobs and pods.

Like client-go's informer: list once, then watch from the list's resource version; a
410 Gone (or a restart) lists again; a watch ERROR 5xx waits with bounded backoff; lines
that are not events are skipped. Every user's status is read from this cache, so the
number of API requests does not grow with users or with how often they look.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from ..cluster import api
from ..cluster.errors import ClusterError, ClusterGone
from ..cluster.follow import _lines, watch_events

logger = logging.getLogger(__name__)


class Informer:
    """A thread keeping ``objects`` (name -> object dict) equal to what ``list_fn`` lists in ``namespace``."""

    def __init__(self, list_fn: Callable[..., Any], namespace: str, label_selector: str, what: str, *,
                 on_change: Callable[[dict[str, Any]], None] | None = None, watch_timeout: float = 60.0,
                 max_backoff: float = 30.0) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.label_selector = label_selector
        self.what = what
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.objects: dict[str, dict[str, Any]] = {}
        self.resource_version = ""
        self.lock = threading.Lock()
        self.ready = threading.Event()
        #: requests made: lists (first one and after 410), watches (and how many ended quietly), errors waited out
        self.stats = {"lists": 0, "watches": 0, "renewed": 0, "errors": 0}
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

    def remember(self, obj: dict[str, Any]) -> None:
        """Put what this process just created in the cache at once (read your own writes); the watch refines it."""
        with self.lock:
            self.objects.setdefault(obj["metadata"]["name"], obj)
        self._changed(obj)

    def forget(self, name: str) -> None:
        """Drop what this process just deleted (its DELETED event may come later)."""
        with self.lock:
            obj = self.objects.pop(name, None)
        if obj is not None:
            self._changed(obj)

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        errors = 0
        while not self._stop.is_set():
            try:
                if not self.resource_version:
                    self._list()
                self._watch()
                errors = 0
            except ClusterGone:
                logger.info("watch of %s expired (410 Gone); listing again", self.what)
                self.resource_version = ""
            except (ClusterError, *api.CONNECTION_ERRORS, ValueError) as err:
                errors += 1
                self.stats["errors"] += 1
                delay = min(self.max_backoff, 0.2 * 2 ** min(errors, 8))
                logger.warning("watch of %s failed (%s); again in %.1f s", self.what, err, delay)
                self._stop.wait(delay)

    def _list(self) -> None:
        resp = api.call(self.list_fn, self.namespace, label_selector=self.label_selector, _preload_content=False,
                        what=f"list {self.what}", retries=2)
        try:
            listed = json.loads(resp.data)
        finally:
            resp.release_conn()
        self.stats["lists"] += 1
        fresh = {o["metadata"]["name"]: o for o in listed.get("items") or []}
        with self.lock:
            changed = [o for n, o in fresh.items() if self.objects.get(n) != o]
            gone = [o for n, o in self.objects.items() if n not in fresh]
            self.objects = fresh
            self.resource_version = (listed.get("metadata") or {}).get("resourceVersion") or ""
        self.ready.set()
        for obj in changed + gone:
            self._changed(obj)

    def _watch(self) -> None:
        self.stats["watches"] += 1
        resp = api.call(self.list_fn, self.namespace, label_selector=self.label_selector, watch=True,
                        allow_watch_bookmarks=True, resource_version=self.resource_version,
                        timeout_seconds=max(1, int(self.watch_timeout)), _preload_content=False,
                        _request_timeout=(10.0, self.watch_timeout + 2), what=f"watch {self.what}", retries=2)
        try:
            for event in watch_events(_lines(resp), self.what):
                if self._stop.is_set():
                    return
                obj = event["object"]
                kind = event.get("type")
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise ClusterGone(str(obj.get("message")))
                    raise ClusterError(f"the watch answered {obj.get('code')} ({obj.get('message')})")
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if kind != "BOOKMARK":
                    name = obj["metadata"]["name"]
                    with self.lock:  # an event that changes nothing (a replayed ADDED, a late DELETED) is not told
                        if kind == "DELETED":
                            news = self.objects.pop(name, None) is not None
                        else:
                            news = self.objects.get(name) != obj
                            self.objects[name] = obj
                    if news:
                        self._changed(obj)
                if rv:
                    self.resource_version = rv
        except api.CONNECTION_ERRORS as err:  # a quiet or cut stream: watch again from where it was
            logger.debug("watch of %s ended (%s); renewing", self.what, type(err).__name__)
            self.stats["renewed"] += 1
        finally:
            resp.release_conn()

    def _changed(self, obj: dict[str, Any]) -> None:
        if self.on_change is not None:
            try:
                self.on_change(obj)
            except Exception:  # a listener must never stop the cache
                logger.exception("listener of %s failed", self.what)


def wait_ready(*informers: Informer, timeout: float = 30.0) -> None:
    """Block until every informer has listed once."""
    deadline = time.monotonic() + timeout
    for inf in informers:
        if not inf.ready.wait(max(0.0, deadline - time.monotonic())):
            raise ClusterError(f"Cannot list {inf.what}: the cluster did not answer within {timeout:.0f} s")
