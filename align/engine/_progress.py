"""Progress of long engine steps (grids, permutation nulls, bootstraps): a tqdm bar with the time left.

``progress=None`` (the default everywhere) shows a bar when standard error is a terminal or the environment sets
``ALIGN_PROGRESS=1`` (batch jobs writing logs), and nothing otherwise (``ALIGN_PROGRESS=0`` silences it); ``True``
or ``False`` decide explicitly. Bars go to standard error, so tables and summaries on standard output stay clean.
"""

from __future__ import annotations

import os
import sys


def show_progress(progress: bool | None) -> bool:
    """Whether a bar is shown for ``progress`` (None: terminal or ``ALIGN_PROGRESS=1``)."""
    if progress is not None:
        return bool(progress)
    env = os.environ.get("ALIGN_PROGRESS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def bar(total: int, desc: str, unit: str, progress: bool | None):
    """A tqdm bar of ``total`` steps (with rate and estimated time left), or a silent one."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not show_progress(progress), leave=False,
                dynamic_ncols=True, mininterval=0.5)
