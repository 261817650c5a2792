"""Progress bars for long work: widget bars in JupyterLab, text bars in workflow jobs and terminals.

    from .progress import tqdm
    for batch in tqdm(batches, desc="sampling"): ...

tqdm.auto draws a widget in any Jupyter kernel where ipywidgets is installed, and a workflow job's
notebook runs in such a kernel too (under papermill): there the widget would be stored in the
executed copy and the job's text log would show no bar at all. So ``workflow.setup``, the first
call of every notebook, switches to tqdm's text bar inside a workflow job (``use_text_bars``).
"""
from __future__ import annotations

from tqdm.auto import tqdm as _auto_bar
from tqdm.std import tqdm as _text_bar

_text_only = False


def use_text_bars(on: bool = True) -> None:
    """Text bars from now on in this process (on=False: tqdm.auto's choice again)."""
    global _text_only
    _text_only = bool(on)


def tqdm(*args, **kwargs):
    """tqdm.auto's bar, or tqdm's text bar after ``use_text_bars()``."""
    return (_text_bar if _text_only else _auto_bar)(*args, **kwargs)
