"""The engine: every layer pair of two models under any metric in one compiled call, plus statistics.

Public surface (one name per line).
"""

from align.engine._battery import check_metric
from align.engine._battery import check_probe
from align.engine._devices import batch_from_memory
from align.engine._devices import free_bytes
from align.engine._devices import make_mesh
from align.engine._difference import paired_difference
from align.engine._grid import bootstrap_ci
from align.engine._grid import constant_layer_error
from align.engine._grid import pairwise
from align.engine._grid import pairwise_within
from align.engine._grid import permutation_null
from align.engine._inputs import directions_of
from align.engine._inputs import resolve_metric
from align.engine._jit import compiled_programs
from align.engine._layergrid import AUX_NAMES
from align.engine._layergrid import STAT_NAMES
from align.engine._layergrid import SYMMETRIC
from align.engine._layergrid import X_TO_Y
from align.engine._layergrid import Y_TO_X
from align.engine._layergrid import LayerGrid
from align.engine._probes import load_probe
from align.engine._report import BatteryReport
from align.engine._report import CheckResult
from align.engine._report import MetricCheckError
from align.engine._progress import bar as progress_bar
