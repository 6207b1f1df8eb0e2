"""The kernel a local run executes in: a real ipykernel over Unix sockets, readiness, and reaping."""

from __future__ import annotations

import asyncio
import json
import sys
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
