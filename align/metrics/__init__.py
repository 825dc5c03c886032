"""Alignment metrics: pure JAX functions of one pair of layers ``X [n, p]``, ``Y [n, q]`` (rows paired by stimulus).

Each public metric function validates its inputs (see ``_validate``: inputs become float32) and is also registered
as a :class:`Metric` with a prepare/compare split, so the engine does per-layer work once. Importing this package
registers the built-ins.
"""

from align.metrics._registry import INVARIANCES
from align.metrics._registry import Metric
from align.metrics._registry import get_metric
from align.metrics._registry import list_metrics
from align.metrics._registry import parse_metric_spec
from align.metrics._registry import register_metric
from align.metrics._validate import MetricInputError
from align.metrics._validate import check_array
from align.metrics._validate import check_pair
from align.metrics._cka import linear_cka
from align.metrics._cka import rbf_cka
from align.metrics._rdm import rdm
from align.metrics._rsa import rankdata
from align.metrics._rsa import rsa
from align.metrics._topology import geotopological_transform
from align.metrics._topology import topological_rsa
from align.metrics._knn import cknna
from align.metrics._knn import cycle_knn
from align.metrics._knn import mutual_knn
from align.metrics._procrustes import procrustes
from align.metrics._procrustes import procrustes_angular
from align.metrics._svcca import svcca

from align.metrics._alphas import ALPHA_EDGE_WARN
from align.metrics._alphas import AlphaGridWarning
from align.metrics._alphas import DEFAULT_ALPHAS
from align.stats import kfold_ids
from align.metrics._ridge import RidgeCVResult
from align.metrics._ridge import linear_predictivity
from align.metrics._ridge import heldout_predictions
from align.metrics._ridge import ridge_cv_predict
from align.metrics._mlp import mlp_predictivity
