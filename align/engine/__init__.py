"""The engine: every layer pair of two models under any metric in one compiled call, plus statistics.

Public surface (one name per line).
"""

from align.engine._battery import BatteryReport
from align.engine._battery import CheckResult
from align.engine._battery import MetricCheckError
from align.engine._battery import check_metric
from align.engine._battery import check_probe
from align.engine._grid import bootstrap_ci
from align.engine._grid import pairwise
from align.engine._grid import pairwise_within
from align.engine._grid import permutation_null
from align.engine._pairwise import LayerGrid
from align.engine._pairwise import resolve_metric
from align.engine._probes import load_probe
from align.engine._stats import paired_difference
