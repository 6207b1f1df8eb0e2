"""What every part of the notebook form shares: the steps of a run, theme-aware styles, links and images.

Colours come from JupyterLab's CSS variables only (text, errors, warnings, success, links, backgrounds),
with the darker shade in the light theme and the lighter one in the dark theme, as the JupyterLab
extension's own style sheet does; :data:`STYLE` is the one style sheet, shown once at the top of the form.
"""

from __future__ import annotations

import html
import io
import os
from pathlib import Path
from typing import Any

import ipywidgets as W

#: the steps of a run, for the progress bar (mirrors labkit.analysis.ica.STEPS; checked in tests)
STEPS = ("load", "filter", "fit", "score", "plot", "label", "report")
#: how often the form looks at a running run (seconds): a status file and the log's tail, about a millisecond
POLL_S = 0.2

_DARK = "[data-jp-theme-light='false']"
#: the form's style sheet: class -> JupyterLab colour (light theme), then the dark theme's lighter shades
STYLE = f"""<style>
.lk-form, .lk-form .widget-html-content {{ color: var(--jp-ui-font-color1); }}
.lk-error {{ color: var(--jp-error-color0, #b71c1c); }}
.lk-warn {{ color: var(--jp-warn-color0, #e65100); }}
.lk-ok {{ color: var(--jp-success-color0, #1b5e20); }}
.lk-muted {{ color: var(--jp-ui-font-color1); font-size: 90%; }}
.lk-hint {{ color: var(--jp-ui-font-color1); font-size: 85%; }}
.lk-form a {{ color: var(--jp-content-link-color, #0d47a1); text-decoration: underline; }}
.lk-banner {{ border-left: 4px solid var(--jp-warn-color1, #f57c00); background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1); padding: 4px 8px; margin: 4px 0; }}
.lk-badge {{ border: 1px solid currentcolor; border-radius: 8px; padding: 0 6px; font-size: 85%;
  color: var(--jp-warn-color0, #e65100); background: var(--jp-layout-color1); }}
.lk-scores tr.suspect th, .lk-scores tr.suspect td {{ font-weight: bold; color: var(--jp-warn-color0, #e65100);
  background: var(--jp-layout-color1); }}
.lk-scores td, .lk-scores th {{ padding: 1px 8px; text-align: right; }}
.lk-state-running, .lk-state-queued {{ color: var(--jp-brand-color0, #0d47a1); }}
.lk-state-cancelled {{ color: var(--jp-ui-font-color1); }}
{_DARK} .lk-error, {_DARK} .lk-state-failed {{ color: var(--jp-error-color3); }}
{_DARK} .lk-warn, {_DARK} .lk-badge, {_DARK} .lk-scores tr.suspect th, {_DARK} .lk-scores tr.suspect td,
{_DARK} .lk-state-succeeded-with-warnings {{ color: var(--jp-warn-color3); }}
{_DARK} .lk-ok, {_DARK} .lk-state-succeeded {{ color: var(--jp-success-color3); }}
{_DARK} .lk-state-running, {_DARK} .lk-state-queued {{ color: var(--jp-brand-color3); }}
.lk-state-failed {{ color: var(--jp-error-color0, #b71c1c); }}
.lk-state-succeeded {{ color: var(--jp-success-color0, #1b5e20); }}
.lk-state-succeeded-with-warnings {{ color: var(--jp-warn-color0, #e65100); }}
.lk-log textarea {{ font-family: var(--jp-code-font-family, monospace); font-size: 85%; }}
</style>"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def span(cls: str, text: str) -> str:
    """``text`` (escaped) in one of :data:`STYLE`'s classes, or nothing for empty text."""
    return f"<span class='{cls}'>{esc(text)}</span>" if text else ""


def error_html(message: str) -> str:
    return span("lk-error", message)


def state_html(state: str) -> str:
    """A run state in its theme colour (``cancelled`` in the body colour: stopped on purpose is no error)."""
    return f"<span class='lk-state-{state.replace(' ', '-')}'>{esc(state)}</span>"


def warnings_html(warnings: list[str] | tuple[str, ...]) -> str:
    """A run's warnings as one banner, each warning once (why it is "succeeded with warnings"), or nothing."""
    unique = list(dict.fromkeys(str(w) for w in warnings))
    if not unique:
        return ""
    items = "".join(f"<li>{esc(w)}</li>" for w in unique)
    return f"<div class='lk-banner labkit-warnings'><b>Warnings</b><ul style='margin:2px 0'>{items}</ul></div>"


def png_image(data: bytes, width: str = "100%", *, title: str = "figure") -> W.HTML:
    """A PNG shown inline, with ``title`` as its text for screen readers (an ``<img>`` with ``alt``)."""
    import base64

    src = base64.b64encode(data).decode()
    return W.HTML(f"<img class='lk-figure' alt='{esc(title)}' title='{esc(title)}' "
                  f"style='max-width:{esc(width)};height:auto' src='data:image/png;base64,{src}'/>")


def png_of(widget: W.Widget) -> bytes | None:
    """The PNG a :func:`png_image` widget shows, or None for any other widget."""
    import base64
    import re

    found = re.search(r"src='data:image/png;base64,([^']+)'", getattr(widget, "value", "") or "")
    return base64.b64decode(found.group(1)) if found and isinstance(widget, W.HTML) else None


def figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _server() -> dict[str, Any] | None:
    """The Jupyter server this kernel belongs to, from its runtime file (``jpserver-<pid>.json``), or None.

    The server that started this kernel is its parent process; a kernel started otherwise takes the
    running server whose root directory holds the kernel's working directory.
    """
    import glob
    import json

    runtime = os.environ.get("JUPYTER_RUNTIME_DIR")
    if not runtime:
        try:
            from jupyter_core.paths import jupyter_runtime_dir
        except ImportError:
            return None
        runtime = jupyter_runtime_dir()
    servers = []
    for name in glob.glob(os.path.join(runtime, "jpserver-*.json")):
        try:
            with open(name) as fh:
                info = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("root_dir"), str):
            servers.append(info)
    parent = [s for s in servers if s.get("pid") == os.getppid()]
    if parent:
        return parent[0]
    cwd = os.path.realpath(os.getcwd())
    holding = [s for s in servers if _inside(cwd, s["root_dir"])]
    return max(holding, key=lambda s: len(s["root_dir"])) if holding else None


def _inside(path: str, root: str) -> bool:
    root = os.path.realpath(os.path.expanduser(root))
    return os.path.commonpath([path, root]) == root


def files_url(path: Path) -> str:
    """Where this Jupyter server serves ``path`` as a plain file (``<base_url>files/<path>``: no kernel, no
    second JupyterLab), or a ``file:`` URI when no server holds it (a script, a terminal)."""
    from urllib.parse import quote

    real = os.path.realpath(path)
    server = _server()
    if server is not None and _inside(real, server["root_dir"]):
        rel = os.path.relpath(real, os.path.realpath(os.path.expanduser(server["root_dir"])))
        base = str(server.get("base_url") or "/")
        return base.rstrip("/") + "/files/" + quote(Path(rel).as_posix())
    return Path(real).as_uri()


def link(path: Path, label: str, *, title: str = "", command: str = "", run_id: str = "") -> str:
    """A link to ``path`` in a new browser tab (the file as this server serves it), with the full path beside it.

    With ``command`` and ``run_id`` it carries ``data-labkit-command`` and ``data-labkit-run-id``: the labkit
    JupyterLab extension catches the click and opens the run's file in a tab of this JupyterLab instead.
    """
    attrs = {"href": files_url(path), "target": "_blank", "rel": "noopener", "title": title or str(path)}
    if command:
        attrs.update({"data-labkit-command": command, "data-labkit-run-id": run_id})
    text = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
    return f"<a {text}>{esc(label)}</a> <code style='font-size:80%'>{esc(path)}</code>"


def tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])
