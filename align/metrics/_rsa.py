"""Representational similarity analysis (Kriegeskorte et al. 2008): compare two RDMs.

Prepare/compare split: ``prepare`` computes a layer's condensed RDM and turns it into a unit vector — ranked
(Spearman, average ranks for ties), centered and normalised; centered and normalised (Pearson); or normalised
(cosine) — so ``compare`` is a dot product of two vectors of length n (n − 1) / 2.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from align.metrics import _kernels
from align.metrics._rdm import RDM_KINDS
from align.metrics._rdm import check_rdm_input
from align.metrics._rdm import condensed_rdm
from align.metrics._registry import Metric
from align.metrics._registry import register_metric
from align.metrics._validate import MetricInputError

RDM_COMPARISONS = ("spearman", "pearson", "cosine")


def rankdata(v):
    """Ranks of ``v`` ``[m]`` starting at 1, ties given their average rank (``scipy.stats.rankdata(v, "average")``).

    Pure JAX and jit-able: a stable sort, then each run of equal values gets the mean of its first and last
    position (computed from integer positions, so ranks are exact up to float32 resolution of the result).

    Returns:
      ``[m]`` float32 ranks.
    """
    v = jnp.asarray(v)
    m = v.shape[0]
    order = jnp.argsort(v, stable=True)
    s = v[order]
    idx = jnp.arange(m, dtype=jnp.int32)
    differs = s[1:] != s[:-1]
    starts_run = jnp.concatenate([jnp.ones((1,), bool), differs])
    ends_run = jnp.concatenate([differs, jnp.ones((1,), bool)])
    first = lax.cummax(jnp.where(starts_run, idx, 0))
    last = lax.cummin(jnp.where(ends_run, idx, m - 1), reverse=True)
    avg = (first + last).astype(jnp.float32) / 2.0 + 1.0
    return jnp.zeros((m,), jnp.float32).at[order].set(avg)


def rdm_vector_unit(v, compare: str = "spearman"):
    """Turn a condensed RDM ``[m]`` into the unit vector whose dot products give the ``compare`` correlation.

    ``spearman``: average ranks, centered, unit norm; ``pearson``: centered, unit norm; ``cosine``: unit norm.
    A constant RDM (every pair equally dissimilar) gives NaN for spearman/pearson.
    """
    if compare not in RDM_COMPARISONS:
        raise ValueError(f"unknown RDM comparison {compare!r}; choose one of {RDM_COMPARISONS}")
    v = jnp.asarray(v, jnp.float32)
    if compare == "spearman":
        v = rankdata(v)
    if compare in ("spearman", "pearson"):
        v = v - jnp.mean(v)
    return v / jnp.linalg.norm(v)


def prepare_rsa(X, rdm: str = "correlation", compare: str = "spearman"):
    """Per-layer work of RSA: the condensed ``rdm`` of ``X`` ``[n, d]`` as a unit vector ``[n (n − 1) / 2]``."""
    return rdm_vector_unit(condensed_rdm(X, rdm), compare)


def compare_rsa(prep_x, prep_y):
    """RSA score from two prepared RDM vectors: their dot product (a scalar in [-1, 1])."""
    return jnp.dot(prep_x, prep_y, precision=_kernels.HIGHEST)


@functools.partial(jax.jit, static_argnames=("rdm", "compare"))
def _rsa(X, Y, rdm, compare):
    return compare_rsa(prepare_rsa(X, rdm, compare), prepare_rsa(Y, rdm, compare))


def check_rdm_pair(X, Y, rdm: str, min_n: int = 3):
    """Validate a pair for an RDM-based metric: each usable by the ``rdm`` distance, same n >= ``min_n``."""
    X = check_rdm_input(X, rdm, "X")
    Y = check_rdm_input(Y, rdm, "Y")
    if X.shape[0] != Y.shape[0]:
        raise MetricInputError(
            f"X has {X.shape[0]} rows but Y has {Y.shape[0]}; rows are stimuli and must be paired one to one"
        )
    if X.shape[0] < min_n:
        raise MetricInputError(f"X and Y have {X.shape[0]} stimuli; this metric needs at least {min_n}")
    return X, Y


def _validate_rsa(n, widths, rdm="correlation", compare="spearman"):
    if rdm not in RDM_KINDS:
        raise ValueError(f"rsa: unknown rdm {rdm!r}; choose one of {RDM_KINDS}")
    if compare not in RDM_COMPARISONS:
        raise ValueError(f"rsa: unknown compare {compare!r}; choose one of {RDM_COMPARISONS}")
    if n < 3:
        raise ValueError(f"rsa needs at least 3 stimuli (2 pairs) to correlate RDMs, got n={n}")


def rsa(X, Y, rdm: str = "correlation", compare: str = "spearman"):
    """Representational similarity analysis: correlation between the two condensed RDMs.

    Args:
      X: ``[n, p]`` activations; integer or float64 input is converted to float32.
      Y: ``[n, q]`` activations, rows paired with X.
      rdm: dissimilarity, one of ``"correlation"``, ``"cosine"``, ``"euclidean"``, ``"sqeuclidean"`` (see
        :func:`align.metrics.rdm`).
      compare: ``"spearman"`` (average ranks for ties), ``"pearson"`` or ``"cosine"``.

    Returns:
      Scalar float32 in [-1, 1]; higher = more aligned.

    Raises:
      MetricInputError: bad input (non-finite, unequal n, n < 3, rows undefined for the distance).
      ValueError: unknown ``rdm`` or ``compare``.
    """
    X, Y = check_rdm_pair(X, Y, rdm)
    _validate_rsa(X.shape[0], (X.shape[1], Y.shape[1]), rdm=rdm, compare=compare)
    return _rsa(X, Y, rdm, compare)


register_metric(
    Metric(
        name="rsa",
        prepare=prepare_rsa,
        compare=compare_rsa,
        symmetric=True,
        bounds=(-1.0, 1.0),
        # Correlation distance centers each stimulus across features, so it is neither rotation- nor
        # translation-invariant (cosine / euclidean RDMs are rotation-invariant; euclidean also translation).
        invariances=frozenset({"isotropic_scale", "stimulus_order"}),
        not_invariant_to="anisotropic_scale",
        min_n=3,
        defaults={"rdm": "correlation", "compare": "spearman"},
        static=frozenset({"rdm", "compare"}),
        prepare_kwargs=frozenset({"rdm", "compare"}),
        validate=_validate_rsa,
        reference="Kriegeskorte, Mur & Bandettini 2008, Representational similarity analysis",
        doc="correlation between condensed RDMs (default: Spearman of correlation-distance RDMs)",
        pad_invariant=False,  # zero feature columns change each stimulus' mean, hence correlation distances
    )
)
