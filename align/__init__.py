"""align: cross-modal representational alignment between frozen vision and language models.

Public surface (one name per line); heavy submodules (torch, transformers) are imported lazily.
"""

from align._version import __version__
from align.metrics._registry import Metric
from align.metrics._registry import get_metric
from align.metrics._registry import list_metrics
from align.metrics._registry import parse_metric_spec
from align.metrics._registry import register_metric
