"""The notebook face: a form that builds ICA parameter sets, runs them and shows their results inline.

One module per part: :mod:`.form` (:class:`IcaForm`), :mod:`.chooser` (:class:`RecordingBrowser`),
:mod:`.results` (:class:`ResultView`), :mod:`.runs` (:class:`JobsView`), :mod:`.history`, :mod:`.sweep`
(the sweep builder), :mod:`.export` (:func:`export_text`), :mod:`.fields` (labels, ranges, messages)
and :mod:`.common` (styles from JupyterLab's theme, links).
"""

from .chooser import RecordingBrowser
from .cluster import _cluster_submit, _cluster_submit_sweep, cluster_status
from .common import STEPS
from .export import EXPORT_FORMATS, PAPERMILL_TEMPLATE, export_sweep, export_text, load_sweep
from .form import IcaForm
from .results import ResultView
from .runs import JobsView

__all__ = ["EXPORT_FORMATS", "PAPERMILL_TEMPLATE", "STEPS", "IcaForm", "JobsView", "RecordingBrowser",
           "ResultView", "_cluster_submit", "_cluster_submit_sweep", "cluster_status", "export_sweep",
           "export_text", "load_sweep"]
