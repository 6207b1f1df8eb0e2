"""The REST handlers under ``<base_url>labkit/``: every one authenticated, answering JSON (the log: text).

Errors are JSON objects naming what was wrong: ``{"message", "field", "value", "allowed"}`` with 400
for a bad field, 404 for a run or file that is not the user's, 409 for an action the run's state
refuses, 422 for a recording MNE cannot read and 429 for a log to follow past the most followed at
once. The API is described in ``openapi.yaml`` beside.
"""

from __future__ import annotations

import asyncio
import functools
import json
import mimetypes
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

import tornado.web
from jupyter_server.base.handlers import APIHandler
from tornado.iostream import StreamClosedError

from labkit.errors import LabkitError, ParameterError, RecordingError
from labkit.lab.runs import LabRuns, NotFound
from labkit.schema import check_draft, json_schema, problem

RUN = r"(?P<run_id>[^/]+)"
#: the longest request body taken (a parameter sweep of a few thousand sets fits)
MAX_BODY = 2 * 1024 * 1024
#: logs followed at once (each holds a thread while it waits for the run's next line; a run view that is
#: refused polls the log's tail instead)
MAX_FOLLOWS = 16
#: the followers' own threads, so that waiting for log lines never takes the threads other requests need
_FOLLOWERS = ThreadPoolExecutor(MAX_FOLLOWS, thread_name_prefix="labkit-log")
#: the places among them (taken without waiting: a follow past them is refused, never queued)
_FOLLOWS = threading.BoundedSemaphore(MAX_FOLLOWS)


class Busy(LabkitError):
    """The server is doing as much of this as it takes at once: answered 429."""


def answers(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[None]]:
    """Run a handler method; a labkit error becomes its JSON answer with the status that fits it."""

    @functools.wraps(method)
    async def wrapper(self: "LabkitHandler", *args: Any, **kwargs: Any) -> None:
        try:
            await method(self, *args, **kwargs)
        except ParameterError as err:
            self.reply(problem(err), 400)
        except NotFound as err:
            self.refuse(404, err)
        except Busy as err:
            self.refuse(429, err)
        except RecordingError as err:
            self.refuse(422, err)
        except LabkitError as err:
            self.refuse(409, err)

    return wrapper


class LabkitHandler(APIHandler):
    """Shared parts: the user's runs, the JSON body, JSON answers and refusals."""

    @property
    def runs(self) -> LabRuns:
        return self.settings["labkit_runs"]

    def body(self) -> Any:
        raw = self.request.body or b"{}"
        if len(raw) > MAX_BODY:
            raise ParameterError("body", f"{len(raw)} bytes", f"at most {MAX_BODY} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ParameterError("body", raw[:80].decode(errors="replace"), "a JSON object") from None

    def query(self) -> dict[str, str]:
        """The query's arguments (JupyterLab's cache-busting timestamp, a bare number, left out)."""
        return {k: self.get_argument(k) for k in self.request.arguments if not k.isdigit()}

    def reply(self, doc: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(doc, default=str))

    def refuse(self, status: int, err: Exception, **fields: Any) -> None:
        self.reply({"message": str(err), **fields}, status)

    async def off_loop(self, work: Callable[..., Any], *args: Any) -> Any:
        """Blocking work (file reads, MNE, a process start) on a thread, so the server stays responsive."""
        return await asyncio.to_thread(work, *args)


class InfoHandler(LabkitHandler):
    @tornado.web.authenticated
    @answers
    async def get(self) -> None:
        from labkit.analysis.recording import reader_table

        remote = self.runs.remote
        self.reply({"base_dir": self.runs.base_dir, "backends": ["machine"] + ([remote.name] if remote else []),
                    "remote_problem": self.runs.remote_problem, "extensions": sorted(reader_table())})


class RunsHandler(LabkitHandler):
    @tornado.web.authenticated
    @answers
    async def get(self) -> None:
        page = await self.off_loop(self.runs.list, self.query())
        self.reply(page.to_dict())

    @tornado.web.authenticated
    @answers
    async def post(self) -> None:
        run = await self.off_loop(self.runs.start, self.body())
        self.reply(run.to_dict(), 201)


class SweepsHandler(LabkitHandler):
    @tornado.web.authenticated
    @answers
    async def post(self) -> None:
        runs = await self.off_loop(self.runs.start_sweep, self.body())
        self.reply({"sweep_id": runs[0].sweep_id, "runs": [r.to_dict() for r in runs]}, 201)


class RunHandler(LabkitHandler):
    @tornado.web.authenticated
    @answers
    async def get(self, run_id: str) -> None:
        self.reply(await self.off_loop(self.runs.detail, run_id))


class LogHandler(LabkitHandler):
    """The run's log as text: the last ``tail`` lines; with ``follow=1`` streamed until the run ends."""

    @tornado.web.authenticated
    @answers
    async def get(self, run_id: str) -> None:
        from labkit.params import whole_number

        query = self.query()
        tail = whole_number("tail", query["tail"], 0, 10**6) if query.get("tail") else None
        follow = query.get("follow", "0") in ("1", "true")
        if follow and not _FOLLOWS.acquire(blocking=False):
            raise Busy(f"{MAX_FOLLOWS} logs are being followed on this server already: ask for the log's tail")
        try:
            await self._send(run_id, follow, tail)
        finally:
            if follow:
                _FOLLOWS.release()

    async def _send(self, run_id: str, follow: bool, tail: int | None) -> None:
        lines = await self.off_loop(lambda: iter(self.runs.log(run_id, follow=follow, tail=tail)))
        self.set_header("Content-Type", "text/plain; charset=utf-8")  # sent with the first flushed line
        self.set_header("Cache-Control", "no-cache")
        done, loop = object(), asyncio.get_running_loop()
        while True:
            line = await (loop.run_in_executor(_FOLLOWERS, next, lines, done) if follow
                          else self.off_loop(next, lines, done))
            if line is done:
                break
            try:
                self.write(line + "\n")
                if follow:
                    await self.flush()
            except StreamClosedError:  # the reader went away: stop following
                return
        self.finish(set_content_type="text/plain; charset=utf-8")


class ComponentsHandler(LabkitHandler):
    @tornado.web.authenticated
    @answers
    async def get(self, run_id: str) -> None:
        from labkit.analysis.exclusions import components

        result = await self.off_loop(self.runs.result, run_id)
        self.reply({"components": components(result)})

    @tornado.web.authenticated
    @answers
    async def put(self, run_id: str) -> None:
        self.reply({"components": await self.off_loop(self.runs.save_components, run_id, self.body())})


class ActionHandler(LabkitHandler):
    @tornado.web.authenticated
    @answers
    async def post(self, run_id: str, action: str) -> None:
        if action == "cancel":
            self.reply((await self.off_loop(self.runs.cancel, run_id)).to_dict())
        elif action == "rerun":
            self.reply((await self.off_loop(self.runs.rerun, run_id)).to_dict(), 201)
        else:
            self.reply({"cleaned": await self.off_loop(self.runs.apply, run_id, self.body())})


class FileHandler(LabkitHandler):
    """A file of the run's folder (figures, the report, the notebook), with its type."""

    @tornado.web.authenticated
    @answers
    async def get(self, run_id: str, name: str) -> None:
        path = await self.off_loop(self.runs.file, run_id, name)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind == "text/html":  # the report's scripts run, but in a sandbox without this server's cookies
            self.set_header("Content-Security-Policy", "sandbox allow-scripts")
        self.finish(await self.off_loop(path.read_bytes), set_content_type=kind)


class ComponentFigureHandler(LabkitHandler):
    """One component's own topomap, or MNE's properties figure of it, as PNG (drawn on a worker thread)."""

    @tornado.web.authenticated
    @answers
    async def get(self, run_id: str, component: str, figure: str) -> None:
        png = await self.off_loop(self.runs.component_figure, run_id, component, figure)
        self.set_header("Cache-Control", "private, max-age=3600")  # a succeeded run's figures never change
        self.finish(png, set_content_type="image/png")


class CompareHandler(LabkitHandler):
    """Runs side by side: ``?runs=a,b,...``, the first run's maps matched in the others by correlation."""

    @tornado.web.authenticated
    @answers
    async def get(self) -> None:
        from labkit.lab.studies import compare

        self.reply(await self.off_loop(compare, self.runs, self.query()))


class SweepHandler(LabkitHandler):
    """A sweep's runs as its matrix of recordings x methods x seeds."""

    @tornado.web.authenticated
    @answers
    async def get(self, sweep_id: str) -> None:
        from labkit.lab.studies import sweep_matrix

        self.reply(await self.off_loop(sweep_matrix, self.runs, sweep_id))


class RerunFailedHandler(LabkitHandler):
    @tornado.web.authenticated
    @answers
    async def post(self, sweep_id: str) -> None:
        from labkit.lab.studies import rerun_failed

        runs = await self.off_loop(rerun_failed, self.runs, sweep_id)
        self.reply({"sweep_id": sweep_id, "runs": [r.to_dict() for r in runs]}, 201)


class FormHandler(LabkitHandler):
    """The notebook cell that opens the notebook form on a run's parameters, and where to write it."""

    @tornado.web.authenticated
    @answers
    async def get(self, run_id: str) -> None:
        from labkit.lab.studies import form_cell

        self.reply(await self.off_loop(form_cell, self.runs, run_id))


class RecordingHandler(LabkitHandler):
    """A recording's header for the run dialog: channel types with counts, duration, Nyquist."""

    @tornado.web.authenticated
    @answers
    async def get(self) -> None:
        path = await self.off_loop(self.runs.recording_path, self.get_argument("path", ""))
        info = await self.off_loop(self.runs.describe, path)
        self.reply({"path": self.get_argument("path"), "sfreq": info.sfreq, "nyquist": info.sfreq / 2,
                    "duration": info.duration, "last_time": info.last_time, "channel_counts": info.channel_counts,
                    "good_counts": info.good_counts, "ranks": info.ranks})


class SchemaHandler(LabkitHandler):
    @tornado.web.authenticated
    @answers
    async def get(self) -> None:
        self.reply(json_schema())


class ValidateHandler(LabkitHandler):
    """A draft parameter set's problems, field by field, in the CLI's words (bounded by the header when readable)."""

    @tornado.web.authenticated
    @answers
    async def post(self) -> None:
        self.reply(await self.off_loop(self._check, self.body()))

    def _check(self, body: Any) -> dict[str, Any]:
        values = self.runs.values_of(body)
        return check_draft(values, header_problems=self._header_check(values)).to_dict()

    def _header_check(self, values: Any) -> Callable[[Any], list[ParameterError]] | None:
        """What the chosen recording's header says of a set (its own problem when it cannot be read)."""
        from labkit.analysis.recording import header_problems

        path = values.get("raw_file_path") if isinstance(values, dict) else None
        if not isinstance(path, str) or not path:
            return None
        try:
            info = self.runs.describe(self.runs.recording_path(path))
        except ParameterError as err:
            found: list[ParameterError] = [err]
        except RecordingError as err:
            found = [ParameterError("raw_file_path", path, f"a recording MNE reads ({err})")]
        else:
            return lambda params: header_problems(params, info)
        return lambda _: found


def routes() -> list[tuple[str, type]]:
    """The handlers, relative to the server's base URL."""
    return [
        (r"/labkit/info", InfoHandler),
        (r"/labkit/runs", RunsHandler),
        (r"/labkit/sweeps", SweepsHandler),
        (rf"/labkit/runs/{RUN}", RunHandler),
        (rf"/labkit/runs/{RUN}/log", LogHandler),
        (rf"/labkit/runs/{RUN}/components", ComponentsHandler),
        (rf"/labkit/runs/{RUN}/(?P<action>cancel|rerun|apply)", ActionHandler),
        (rf"/labkit/runs/{RUN}/files/(?P<name>[^/]+)", FileHandler),
        (rf"/labkit/runs/{RUN}/components/(?P<component>[^/]+)/(?P<figure>topomap|properties).png",
         ComponentFigureHandler),
        (rf"/labkit/runs/{RUN}/form", FormHandler),
        (r"/labkit/compare", CompareHandler),
        (r"/labkit/sweeps/(?P<sweep_id>[^/]+)", SweepHandler),
        (r"/labkit/sweeps/(?P<sweep_id>[^/]+)/rerun-failed", RerunFailedHandler),
        (r"/labkit/recording", RecordingHandler),
        (r"/labkit/schema", SchemaHandler),
        (r"/labkit/validate", ValidateHandler),
    ]
