"""SVCCA (Raghu, Gilmer, Yosinski & Sohl-Dickstein 2017): SVD truncation, then canonical correlation analysis.

Each layer is centered and reduced by an exact SVD to the leading components that explain ``keep`` of its
variance; the canonical correlations between the two reduced subspaces are the singular values of ``Uxᵀ Uy``
(the kept left singular vectors are already orthonormal bases of the reduced data); the score is their mean over
the ``min(rx, ry)`` canonical pairs. Deterministic (no randomised SVD).

Shapes stay static: components are dropped by a mask (``keep`` is traced, so sweeping it does not recompile). A
prep is ``{"basis": [n, min(n, d)], "rank": scalar}`` with the dropped columns zeroed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from align.metrics import _kernels
from align.metrics._registry import Metric
from align.metrics._registry import register_metric
from align.metrics._validate import check_pair


def prepare_svcca(X, keep=0.99):
    """Per-layer work of SVCCA: the orthonormal basis of X's leading principal components.

    Component i is kept when the variance fraction of components 0..i−1 is still below ``keep`` (so the kept set
    is the smallest leading set explaining at least ``keep``), and its singular value is above the numerical-rank
    tolerance ``s_max · max(n, d) · eps``.

    Args:
      X: ``[n, d]`` activations.
      keep: fraction of variance to keep, in (0, 1]; traced.

    Returns:
      dict ``basis`` ``[n, min(n, d)]`` float32 (kept left singular vectors, other columns zero) and ``rank``
      (float32 scalar, the number kept).
    """
    Xc = _kernels.unit_scale(_kernels.center_columns(X))  # exact power of two: variances cannot under/overflow
    n, d = Xc.shape
    U, s, _ = jnp.linalg.svd(Xc, full_matrices=False)
    var = s * s
    before = (jnp.cumsum(var) - var) / jnp.sum(var)
    tol = s[0] * max(n, d) * jnp.finfo(jnp.float32).eps
    kept = (before < jnp.asarray(keep, jnp.float32)) & (s > tol)
    return {"basis": U * kept[None, :].astype(jnp.float32), "rank": jnp.sum(kept.astype(jnp.float32))}


def compare_svcca(prep_x, prep_y):
    """Mean canonical correlation between two :func:`prepare_svcca` preps (scalar in [0, 1])."""
    C = _kernels.matmul(prep_x["basis"].T, prep_y["basis"])
    rho = jnp.linalg.svd(C, compute_uv=False)
    return jnp.clip(jnp.sum(rho) / jnp.minimum(prep_x["rank"], prep_y["rank"]), 0.0, 1.0)


@jax.jit
def _svcca(X, Y, keep):
    return compare_svcca(prepare_svcca(X, keep), prepare_svcca(Y, keep))


def _validate_svcca(n, widths, keep=0.99):
    if not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"svcca: keep is a fraction of variance in (0, 1], got {keep}")


def svcca(X, Y, keep=0.99):
    """SVCCA: mean canonical correlation between the leading principal subspaces of X and Y.

    Note that when ``rx + ry > n`` the two subspaces must intersect and some canonical correlations are 1 whatever
    the data; keep n well above the kept ranks.

    Args:
      X: ``[n, p]`` activations; integer or float64 input is converted to float32.
      Y: ``[n, q]`` activations, rows paired with X.
      keep: fraction of each matrix's variance kept by the SVD truncation, in (0, 1].

    Returns:
      Scalar float32 in [0, 1]; higher = more aligned.

    Raises:
      MetricInputError: non-finite values, unequal n, n < 3, or a constant (zero-variance) input.
    """
    X, Y = check_pair(X, Y, min_n=3, require_variance=True)
    _validate_svcca(X.shape[0], (X.shape[1], Y.shape[1]), keep)
    return _svcca(X, Y, jnp.float32(keep))


register_metric(
    Metric(
        name="svcca",
        prepare=prepare_svcca,
        compare=compare_svcca,
        symmetric=True,
        bounds=(0.0, 1.0),
        invariances=frozenset({"rotation", "isotropic_scale", "translation", "stimulus_order"}),
        not_invariant_to="elementwise_nonlinear",
        min_n=3,
        defaults={"keep": 0.99},
        static=frozenset(),
        prepare_kwargs=frozenset({"keep"}),
        validate=_validate_svcca,
        pad_invariant=True,  # zero columns add zero singular values, which no kept subspace contains
        reference="Raghu, Gilmer, Yosinski & Sohl-Dickstein 2017, SVCCA (NeurIPS)",
        doc="mean canonical correlation between the principal subspaces explaining `keep` of the variance",
    )
)
