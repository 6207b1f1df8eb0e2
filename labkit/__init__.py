"""labkit: EEG/MEG ICA runs from a parameter set to a self-describing result folder.

The story, module by module: ``params`` (the parameter set) -> ``recording`` and
``ica`` (the analysis) -> ``results`` (the result folder) -> ``runners`` (local
papermill, Kubernetes) -> faces (``cli``, ``widgets``).
"""

from labkit.errors import LabkitError, ParameterError, RecordingError, RunFailed
from labkit.params import IcaParams

__version__ = "0.1.0"

__all__ = ["IcaParams", "LabkitError", "ParameterError", "RecordingError", "RunFailed", "__version__"]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the built frontend (``extension/`` builds into ``labkit/labextension``)."""
    return [{"src": "labextension", "dest": "labkit-extension"}]

