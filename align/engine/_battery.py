"""The metric battery: checks that a metric (built-in or custom probe) does what it declares.

``check_metric`` scores small random layers and returns a :class:`BatteryReport`, one :class:`CheckResult` per
check with the numbers behind it:

- ``identity``: X with itself reaches the top of the declared bounds (or, without bounds, scores > 0.9 (< 0.1 for a
  distance) and at least as aligned as a related pair).
- ``symmetry`` (declared ``symmetric``): score(X, Y) = score(Y, X).
- ``bounds`` (declared ``bounds``): every score of the battery is finite and inside them.
- ``invariance:<t>`` for each declared invariance ``t`` in rotation, isotropic_scale, translation (either side);
  ``stimulus_order``: the same permutation of the rows of both sides leaves the score unchanged.
- ``non_invariance:<t>`` (declared ``not_invariant_to``): that transformation must change the score.
- ``scale_extremes`` (declared ``isotropic_scale``): X, Y or both multiplied by each of :data:`SCALES` (1e-12 to
  1e8) score as the unscaled pair, within :data:`SCALE_TOL` (relative). float32 squares of activations scaled by
  1e-12 flush to zero and fourth powers of activations scaled by 1e8 overflow, so a metric passes only when it
  computes in a scaled form (e.g. :func:`align.metrics._kernels.unit_scale` before forming Grams or norms).
- ``jit_equals_eager``: the engine's compiled grid equals the metric evaluated op by op without jit.
- ``no_recompilation``: a second grid of the same shapes with fresh data compiles nothing new.
- ``padding``: for a metric declaring ``pad_invariant=True``, layers of widths 32, 40 and 48 (one pad bucket of the
  engine) scored batched, where the engine zero-pads them to 48, equal the same layers scored one pair at a time
  unpadded (``batched=False``), and a layer with zero feature columns appended scores as the layer itself (relative
  tolerance 1e-5). A false declaration fails even where the engine would not pad this metric (its prepared shape
  does not depend on the width). A metric that does not declare it must come out of the engine unpadded; the
  report says how much zero columns would change its score.
- ``degenerate_input``: NaN values, row counts that differ and fewer than ``min_n`` stimuli raise a ``ValueError``.

The transformed pairs of the first checks share one shape and are scored in ONE jitted, vmapped call, so a whole
battery compiles a handful of programs (a few seconds per metric on a CPU). Warnings the engine emits on the
battery's random data (e.g. linear predictivity's alpha-grid warning) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from align.engine._checks import N_PADDING
from align.engine._checks import N_VARIANTS
from align.engine._checks import degenerate_check
from align.engine._checks import engine_checks
from align.engine._checks import variant_checks
from align.engine._inputs import resolve_metric
from align.engine._probes import load_probe
from align.engine._report import BatteryReport
from align.metrics import Metric
from align.metrics import get_metric
from align.metrics import list_metrics


def check_metric(metric: str | Metric, *, metric_kwargs: Mapping[str, Any] | None = None) -> BatteryReport:
    """Put one metric (built-in or custom probe) through the battery and report every check.

    The battery checks the metric against its own declarations (``symmetric``, ``bounds``, ``invariances``,
    ``not_invariant_to``, ``pad_invariant``, ``min_n``) on small random layers; see the module docstring of
    ``align.engine._battery`` for the list. It takes a few seconds (mostly compilation). From the shell:
    ``align check-probe path/to/probe.py``.

    Args:
      metric: a registered name, a spec string (``"rsa(rdm='cosine')"``) or an :class:`align.Metric` (registered or
        not).
      metric_kwargs: the metric's keyword arguments to check it with (override those of a spec string).

    Returns:
      A :class:`BatteryReport`: ``report.passed``, ``report.failures``, ``report["padding"].values``,
      ``print(report)`` (one line per check). It does not raise when a check fails; call
      ``report.raise_if_failed()`` for a :class:`MetricCheckError` naming the failed checks.

    Raises:
      ValueError: an unknown metric or keyword argument.
    """
    metric, kwargs = resolve_metric(metric, metric_kwargs)
    metric.split_kwargs(kwargs)  # unknown names are a user error, not a failed check
    checks = variant_checks(metric, kwargs, max(N_VARIANTS, 2 * metric.min_n))
    checks += engine_checks(metric, kwargs, max(N_PADDING, 2 * metric.min_n))
    checks.append(degenerate_check(metric, kwargs))
    return BatteryReport(metric.name, dict(kwargs), tuple(checks))


def check_probe(path_or_module: str | Path) -> dict[str, BatteryReport]:
    """Load a probe (as :func:`align.load_probe`) and put every metric it registers through the battery.

    Args:
      path_or_module: a ``.py`` file or an importable module name.

    Returns:
      ``{metric name: BatteryReport}``, by metric name.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the probe registers no metric.
    """
    before = set(list_metrics())
    module = load_probe(path_or_module)
    names = [name for name in list_metrics() if name not in before or _defined_in(get_metric(name), module.__name__)]
    if not names:
        raise ValueError(f"probe {str(path_or_module)!r} registers no metric; call align.register_metric in it "
                         "(see README 'Adding a probe')")
    return {name: check_metric(get_metric(name)) for name in names}


def _defined_in(metric: Metric, module_name: str) -> bool:
    fns = (metric.compare, metric.prepare, metric.prepare_target)
    return any(getattr(fn, "__module__", None) == module_name for fn in fns if fn is not None)
