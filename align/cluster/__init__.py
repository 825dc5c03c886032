"""Running at scale on a Ray cluster (``[execution] backend = "ray"``; needs ``pip install 'align[cluster]'``).

Extraction runs on Ray Data (``extract_on_ray``: an actor pool computes the activations, the driver writes the
stores); scoring runs one Ray task per job of every experiment kind (``RayExecutor``, for
``align.experiments.run_plans``). Results are those of a local run, which a Ray run resumes and vice versa. Ray is
imported only when a run uses it.
"""

from align.cluster._backend import CRASH_ONCE_ENV
from align.cluster._backend import MAX_RETRIES
from align.cluster._backend import ClusterError
from align.cluster._backend import check_address
from align.cluster._backend import connect
from align.cluster._backend import require_ray
from align.cluster._ray_extract import extract_on_ray
from align.cluster._ray_score import RayExecutor
