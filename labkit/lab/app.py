"""The labkit Jupyter server extension: the user's ICA runs for the JupyterLab frontend (``extension/``).

Configured like every Jupyter server extension, with traitlets (``c.LabkitApp.base_dir = ...`` in a
``jupyter_server_config.py``, or ``--LabkitApp.base_dir=...``). The base directory is the server's root
directory unless set: on the lab hub that is the user's own directory, and nothing outside it is served.
"""

from __future__ import annotations

import datetime as dt

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import PeriodicCallback
from traitlets import Float, Int, Unicode

from labkit.lab.handlers import routes
from labkit.lab.runs import LabRuns


class LabkitApp(ExtensionApp):
    name = "labkit"

    base_dir = Unicode("", config=True, help="the user's base directory (default: the server's root directory)")
    workers = Int(1, config=True, help="runs of a sweep at once on this server")
    activity_interval = Float(30.0, config=True,
                              help="seconds between activity reports to the hub while a run started here is going")
    use_remote = Unicode("auto", config=True,
                         help="also list and submit cluster runs: 'auto' (a hub service or cluster settings "
                              "in the environment), or 'no'")

    def initialize_settings(self) -> None:
        remote, problem = None, ""
        if self.use_remote == "auto":
            from labkit.errors import LabkitError
            from labkit.runners.factory import choose_backend

            try:
                backend, why = choose_backend(self.base_dir or self.serverapp.root_dir)
                remote = None if backend.name == "machine" else backend
                self.log.info("labkit: %s", why)
            except LabkitError as err:  # this machine's runs are still served; the panel says why no cluster
                problem = f"cluster runs are not available here: {err}"
                self.log.warning("labkit: %s", problem)
        self.runs = LabRuns(self.base_dir or self.serverapp.root_dir, remote, workers=self.workers)
        self.runs.remote_problem = problem
        self.settings["labkit_runs"] = self.runs
        self._activity = PeriodicCallback(self._report_activity, self.activity_interval * 1000)
        self._activity.start()

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    def _report_activity(self) -> None:
        """Runs going here count as activity, so the hub's idle culler leaves the server (and them) alone."""
        if self.runs.busy():
            self.serverapp.web_app.settings["last_activity_times"]["labkit"] = dt.datetime.now(dt.timezone.utc)

    async def stop_extension(self) -> None:
        self._activity.stop()
        self.runs.close()
