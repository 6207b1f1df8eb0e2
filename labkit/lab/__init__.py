"""labkit inside JupyterLab: the server extension the ``extension/`` frontend talks to."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from labkit.lab.app import LabkitApp

    return [{"module": "labkit.lab", "app": LabkitApp}]
