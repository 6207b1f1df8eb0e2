"""The kernel a local run executes in: a real ipykernel over Unix sockets, readiness, and reaping."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from labkit.runners import kernel


def _start(name: str, tmp_path: Path):
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    return kernel.start(name, cwd=tmp_path, sockets=str(sockets))


async def _iopub_until_idle(kc, msg_id: str) -> list[dict]:
    seen = []
    while True:
        msg = await kc.get_iopub_msg(timeout=30)
        seen.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle" \
                and msg["parent_header"].get("msg_id") == msg_id:
            return seen


@pytest.mark.parametrize("name", [kernel.HEADLESS, "python3"])
def test_ready_kernel_runs_code_and_leaves_no_stale_iopub(tmp_path, name):
    km = _start(name, tmp_path)
    try:
        kc = km.client()
        assert isinstance(kc, kernel.ReadyClient)
        kc.start_channels()

        async def scenario() -> list[dict]:
            await kc.wait_for_ready(timeout=60)
            msg_id = kc.execute("import os, sys; print(os.getcwd()); print(sys.executable)")
            return await _iopub_until_idle(kc, msg_id)

        seen = asyncio.run(scenario())
        # readiness consumed everything the kernel_info handshake published: the first IOPub
        # message after it belongs to our own request
        assert {m["parent_header"].get("msg_id") for m in seen} == {seen[-1]["parent_header"]["msg_id"]}
        out = "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream").split()
        assert out[0] == str(tmp_path), "the kernel runs in the folder it was given"
        if name == kernel.HEADLESS:
            assert out[1] == sys.executable, "the headless kernel runs labkit's own interpreter"
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    assert not km.is_alive()
    assert not list(tmp_path.glob("sockets/kernel-*")), "shutdown removes the kernel's sockets"


@pytest.fixture
def fake_kernels(tmp_path, monkeypatch) -> Path:
    """Kernelspecs for kernels that misbehave: one exits at once, one never answers."""
    root = tmp_path / "jupyter"
    for name, code in (("dies", "import sys; sys.exit(3)"), ("mute", "import time; time.sleep(60)")):
        spec = root / "kernels" / name
        spec.mkdir(parents=True)
        argv = [sys.executable, "-c", code, "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(root))
    return root


@pytest.mark.parametrize(("name", "message"), [("dies", "died before replying"), ("mute", "didn't respond in 2")])
def test_readiness_fails_clearly_when_the_kernel_cannot_answer(tmp_path, fake_kernels, name, message):
    km = _start(name, tmp_path)
    try:
        kc = km.client()
        kc.start_channels()
        with pytest.raises(RuntimeError, match=message):
            asyncio.run(kc.wait_for_ready(timeout=2))
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    assert not km.is_alive()


def test_headless_kernel_skips_only_the_debugger_and_completion(tmp_path):
    """What the headless kernel leaves out is what a frontend would use; the analysis' imports still work.

    Its start-up objects are frozen out of garbage collection, which runs less often.
    """
    km = _start(kernel.HEADLESS, tmp_path)
    try:
        kc = km.client()
        kc.start_channels()
        code = ("import gc, sys, IPython.core.completer as c, ipykernel.debugger as d\n"
                "print(c.JEDI_INSTALLED, d._is_debugpy_available, 'labkit.runners.template' in sys.modules)\n"
                "print(gc.get_threshold() == kernel_thresholds, gc.get_freeze_count() > 1000)\n"
                "from labkit.runners import template\n"
                "print(template.__name__)").replace("kernel_thresholds", repr(kernel.GC_THRESHOLDS))

        async def scenario() -> str:
            await kc.wait_for_ready(timeout=60)
            seen = await _iopub_until_idle(kc, kc.execute(code))
            errors = [m["content"] for m in seen if m["msg_type"] == "error"]
            assert not errors, errors
            return "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")

        assert asyncio.run(scenario()).split() == ["False", "False", "False", "True", "True", "labkit.runners.template"]
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (nobody may reap orphans in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_close_kills_the_kernel_and_what_it_started_and_leaves_no_sockets(tmp_path):
    """A run's kernel goes with everything it spawned; the manager reports it dead as soon as close returns."""
    km = _start(kernel.HEADLESS, tmp_path)
    kc = km.client()
    kc.start_channels()
    code = "import os, subprocess\nchild = subprocess.Popen(['sleep', '60'])\nprint(os.getpid(), child.pid)"

    async def scenario() -> str:
        await kc.wait_for_ready(timeout=60)
        seen = await _iopub_until_idle(kc, kc.execute(code))
        return "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")

    pids = [int(p) for p in asyncio.run(scenario()).split()]
    assert all(_running(p) for p in pids)
    km.close()
    assert not km.is_alive() and not km.has_kernel
    assert not [p for p in pids if _running(p)], "the kernel and its child were killed"
    assert not list(tmp_path.glob("sockets/kernel-*")), "close removes the kernel's sockets"
    assert km.context.closed and all(c.context.closed for c in [kc])


def test_close_of_a_kernel_that_already_died_only_cleans_up(tmp_path, fake_kernels):
    km = _start("dies", tmp_path)
    deadline = time.monotonic() + 30
    while km.is_alive() and time.monotonic() < deadline:  # waits for the exit, not for a time
        time.sleep(0.01)
    assert not km.is_alive()
    km.close()
    assert not km.has_kernel and not list(tmp_path.glob("sockets/kernel-*"))
