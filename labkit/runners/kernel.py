"""The Jupyter kernel a local run executes in: started by labkit, handed to papermill.

:class:`~labkit.runners.local.LocalRunner` starts the kernel before it imports papermill, so
the kernel boots on the second core meanwhile, and passes it to papermill as ``km``.
By default that kernel is :data:`HEADLESS`: ipykernel on this very interpreter (so it
can import labkit), without the debugger and tab completion that a run nobody attaches
a frontend to never uses, and with garbage collection tuned for one short batch run.
Two waits of jupyter_client's that every papermill run pays are cut too, through its public
methods only: the quiet period that ends ``wait_for_ready`` (0.2 s) and the 0.1 s poll that
reaps a killed kernel.

``python -m labkit.runners.kernel -f CONNECTION_FILE`` is the headless kernel itself.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client import protocol_version_info
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_core.paths import jupyter_path

#: the name of labkit's headless kernel; any other name is looked up among the installed kernelspecs
HEADLESS = "labkit-headless"
#: modules a headless kernel never needs and would import at start (0.1 s): the debugger, tab completion.
#: ipykernel and IPython both carry on without them, as when they are not installed.
HEADLESS_SKIPS = ("debugpy", "jedi")
#: the headless kernel's garbage-collection thresholds (Python's: 700, 10, 10); measured 0.3 s off a run
GC_THRESHOLDS = (50_000, 20, 20)
#: how often :meth:`RunKernelManager.close` looks whether the killed kernel is gone, and for how long at most
REAP_POLL, REAP_PATIENCE = 0.005, 5.0


class KernelSpecs(KernelSpecManager):
    """Jupyter's kernelspecs plus :data:`HEADLESS`.

    Only Jupyter's kernel directories: also searching the legacy ``~/.ipython/kernels``
    imports IPython (0.4 s) before the kernel could start.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(kernel_dirs=jupyter_path("kernels"), **kwargs)

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == HEADLESS:
            return KernelSpec(argv=[sys.executable, "-m", __name__, "-f", "{connection_file}"],
                              display_name="Python 3 (labkit, headless)", language="python")
        return super().get_kernel_spec(kernel_name)


def start(kernel_name: str, *, cwd: Path, sockets: str) -> RunKernelManager:
    """Start kernel ``kernel_name`` in ``cwd``, listening on Unix sockets in the private dir ``sockets``.

    Unix sockets rather than localhost TCP ports: no other user on a shared hub host can
    reach them. History stays in memory, as nbclient does for its own kernels.
    """
    km = RunKernelManager(kernel_name=kernel_name, kernel_spec_manager=KernelSpecs(), transport="ipc",
                          ip=os.path.join(sockets, "kernel"), client_class=f"{__name__}.ReadyClient")
    km.start_kernel(cwd=str(cwd), extra_arguments=["--HistoryManager.hist_file=:memory:"])
    return km


class RunKernelManager(KernelManager):
    """A kernel manager for one run that reaps its kernel at once and leaves nothing open behind.

    ``shutdown_kernel(now=True)`` sends SIGKILL and then polls for the process every
    0.1 s, so even a kernel that dies at once costs a run 0.1 s. :meth:`close` sends the
    SIGKILL itself (``signal_kernel``), polls ``is_alive`` every 5 ms, and only then calls
    ``shutdown_kernel(now=True)``, which finds the process gone and only cleans up.

    nbclient never stops the client it makes from a kernel manager it was handed (``km=``),
    and that client's heartbeat thread keeps its sockets and zmq context alive: about 12
    file descriptors and a thread per run, which a long sweep runs out of. :meth:`close`
    releases every client this manager made, then the manager's own context.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._run_clients: list[Any] = []

    def client(self, **kwargs: Any) -> Any:
        kc = super().client(**kwargs)
        self._run_clients.append(kc)
        return kc

    def release_clients(self) -> None:
        """Stop every client made so far; the kernel lives on (a warm kernel of labkit.runners.pool serves the next run)."""
        for kc in self._run_clients:
            kc.stop_channels()
            if not kc.context.closed:
                kc.context.destroy(linger=0)
        self._run_clients.clear()

    def kill_and_reap(self) -> None:
        """SIGKILL the kernel's process group and wait (5 ms polls, at most 5 s) until the process is reaped."""
        if self.is_alive():
            self.signal_kernel(signal.SIGKILL)
        deadline = time.monotonic() + REAP_PATIENCE
        while self.is_alive() and time.monotonic() < deadline:  # is_alive polls the process: it reaps it
            time.sleep(REAP_POLL)

    def close(self) -> None:
        """Kill the kernel (every file is closed by the run's last cell) and release its channels,
        sockets and zmq contexts."""
        try:
            if self.has_kernel:
                self.kill_and_reap()
                self.shutdown_kernel(now=True)
        finally:
            self.release_clients()
            self.cleanup_resources()
            if not self.context.closed:
                self.context.destroy(linger=0)


class ReadyClient(AsyncKernelClient):
    """An async kernel client whose ``wait_for_ready`` returns when the kernel is ready.

    jupyter_client's version, after the kernel's ``kernel_info_reply``, drains IOPub
    until 0.2 s pass without a message: every papermill run waits those 0.2 s. But the
    kernel closes each request with an ``idle`` status on IOPub, and IOPub is ordered,
    so once the ``idle`` of our own ``kernel_info_request`` arrives, the shell and IOPub
    channels both work and nothing older is still in flight. That is the handshake
    Jupyter Enhancement Proposal 65 describes frontends using (ask again until both the
    reply and that ``idle`` arrive; a fresh IOPub subscription can miss the first ones).
    """

    #: how long to wait for IOPub before asking again (a fresh subscription can miss messages)
    iopub_patience = 0.2

    async def wait_for_ready(self, timeout: float | None = None) -> None:  # type: ignore[override]
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            request = self.kernel_info()
            reply = await self._reply_to(request, timeout=1.0)
            if reply is not None and await self._idle_after(request):
                self._adapt_to(reply)
                return
            if not await self.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    def _adapt_to(self, reply: dict[str, Any]) -> None:
        """Speak the kernel's protocol version, as jupyter_client's own ``wait_for_ready`` does with the reply."""
        major = int(reply["content"]["protocol_version"].split(".")[0])
        if major != protocol_version_info[0]:
            self.session.adapt_version = major

    async def _reply_to(self, msg_id: str, timeout: float) -> dict[str, Any] | None:
        """The shell reply to ``msg_id`` (older replies to earlier attempts are skipped), or None."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await self.get_shell_msg(timeout=left)
            except Empty:
                return None
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        return None

    async def _idle_after(self, msg_id: str) -> bool:
        """Whether IOPub delivers the ``idle`` status that closes request ``msg_id`` in time."""
        end = time.monotonic() + self.iopub_patience
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await self.get_iopub_msg(timeout=left)
            except Empty:
                return False
            if (msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                    and msg["parent_header"].get("msg_id") == msg_id):
                return True
        return False


def main() -> None:
    """Run the headless kernel (``python -m labkit.runners.kernel -f CONNECTION_FILE``)."""
    for name in HEADLESS_SKIPS:
        sys.modules.setdefault(name, None)  # type: ignore[assignment]  # "import x" now raises ImportError
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize()
    # A run imports about 2 s of modules (mne, matplotlib, scipy, sklearn), and every garbage
    # collection walks the live objects: leave the kernel's own, which live as long as it does,
    # out of those walks, and collect less often in a process that ends with its one run.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    app.start()


if __name__ == "__main__":
    main()
