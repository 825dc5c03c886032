"""Per-layer feature preprocessing (a recorded step before any metric) and the massive-activation diagnostic.

See README "Preprocessing": options ``none``, ``center``, ``zscore``, ``clip(q=0.95)``, ``l2``, ``pca(k)``.
"""

from align.preprocess._steps import DEFAULT_PREPROCESS
from align.preprocess._steps import PREPROCESS_OPTIONS
from align.preprocess._steps import Preprocess
from align.preprocess._steps import PreprocessError
from align.preprocess._steps import parse_preprocess
from align.preprocess._steps import preprocess_layer
from align.preprocess._steps import preprocess_layers
from align.preprocess._diagnostics import DIAGNOSTIC_COLUMNS
from align.preprocess._diagnostics import DOMINANCE_THRESHOLD
from align.preprocess._diagnostics import DominantDimensionsWarning
from align.preprocess._diagnostics import diagnostics_path
from align.preprocess._diagnostics import dominance_message
from align.preprocess._diagnostics import dominated_layers
from align.preprocess._diagnostics import layer_diagnostics
from align.preprocess._diagnostics import store_diagnostics
from align.preprocess._diagnostics import warn_dominant_dimensions
