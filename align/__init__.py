"""align: cross-modal representational alignment between frozen vision and language models.

Public surface (one name per line); heavy submodules (torch, transformers) are imported lazily.
"""

from align._version import __version__
from align.metrics import Metric
from align.metrics import get_metric
from align.metrics import list_metrics
from align.metrics import parse_metric_spec
from align.metrics import register_metric
from align.engine import LayerGrid
from align.engine import bootstrap_ci
from align.engine import check_metric
from align.engine import check_probe
from align.engine import load_probe
from align.engine import paired_difference
from align.engine import pairwise
from align.engine import pairwise_within
from align.engine import permutation_null
from align.store import load_activations
from align.preprocess import DEFAULT_PREPROCESS
from align.preprocess import DominantDimensionsWarning
from align.preprocess import layer_diagnostics
from align.preprocess import parse_preprocess
from align.preprocess import preprocess_layers
from align._threads import configure_threads
from align._threads import usable_cpus
