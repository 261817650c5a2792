"""Progress bars for long work: widget bars in JupyterLab, text bars in workflow jobs and terminals.

    from .progress import tqdm
    for batch in tqdm(batches, desc="sampling"): ...

tqdm.auto draws a widget in any Jupyter kernel where ipywidgets is installed, and a workflow job's
notebook runs in such a kernel too (under papermill): there the widget would be stored in the
executed copy and the job's text log would show no bar at all. So a workflow job
(``workflow.JOB_ENV`` set) gets tqdm's text bar, whatever runs it.
"""
from __future__ import annotations

import os


def tqdm(*args, **kwargs):
    """tqdm.auto's bar, or tqdm's text bar inside a workflow job."""
    from .workflow import JOB_ENV   # (here, not at the top: workflow imports config, which imports models)

    if os.environ.get(JOB_ENV) == "1":
        from tqdm.std import tqdm as bar
    else:
        from tqdm.auto import tqdm as bar
    return bar(*args, **kwargs)
