"""Nearest-neighbour alignment metrics of Huh et al. 2024 (The Platonic Representation Hypothesis, appendix A).

Rows are L2-normalised (an all-zero row stays zero, cosine 0 to every other row); neighbours are the ``k`` rows of
highest cosine similarity, the row itself excluded, ties broken towards the lower index (``lax.top_k`` is stable).

- ``mutual_knn``: mean over stimuli of ``|N_X(i) ∩ N_Y(i)| / k``.
- ``cycle_knn``: fraction of stimuli i for which some Y-neighbour j of i has i among its X-neighbours (the
  reference's ``knn_A[knn_B]`` with A = X, B = Y); asymmetric.
- ``cknna``: CKA restricted to mutual neighbours — the unbiased HSIC (Song et al. 2012) of the cosine kernels
  masked to pairs (i, j) where j is a neighbour of i in both spaces, normalised by each space's HSIC masked to its
  own neighbours (the reference's ``unbiased=True`` form, without its ``1e-6`` in the denominator).

``k`` is static (it fixes shapes). Preps: ``mutual_knn``/``cycle_knn`` keep the ``[n, k]`` int32 neighbour
indices (compare is O(n k²)); ``cknna`` keeps ``[n, n]`` masked kernels.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from align.metrics import _kernels
from align.metrics._registry import Metric
from align.metrics._registry import register_metric
from align.metrics._validate import check_pair


def cosine_kernel(X):
    """Cosine similarities between rows, ``[n, d] -> [n, n]`` (zero rows give 0)."""
    X = jnp.asarray(X, jnp.float32)
    norm = jnp.linalg.norm(X, axis=1, keepdims=True)
    Xn = X / jnp.where(norm > 0, norm, 1.0)
    return _kernels.matmul(Xn, Xn.T)


def _topk_excluding_self(K, k: int):
    n = K.shape[0]
    S = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, K)
    return lax.top_k(S, k)[1]


def knn_indices(X, k: int = 10):
    """Indices of each row's ``k`` nearest neighbours by cosine similarity (self excluded, ties to the lower
    index), most similar first. ``[n, d] -> [n, k]`` int32."""
    return _topk_excluding_self(cosine_kernel(X), k)


def compare_mutual_knn(idx_x, idx_y):
    """Mean fraction of shared neighbours from two ``[n, k]`` neighbour-index arrays."""
    n, k = idx_x.shape
    shared = jnp.sum(idx_x[:, :, None] == idx_y[:, None, :])  # exact integer count
    return shared.astype(jnp.float32) / (n * k)


def compare_cycle_knn(idx_x, idx_y):
    """Fraction of stimuli i with some j in N_Y(i) such that i is in N_X(j), from ``[n, k]`` neighbour indices."""
    n = idx_x.shape[0]
    back = idx_x[idx_y]  # [n, k, k]: X-neighbours of each Y-neighbour of i
    hit = jnp.any(back == jnp.arange(n, dtype=idx_x.dtype)[:, None, None], axis=(1, 2))
    return jnp.sum(hit).astype(jnp.float32) / n


def prepare_cknna(X, k: int = 10):
    """Per-layer work of CKNNA.

    Returns:
      dict with ``masked`` ``[n, n]`` (cosine kernel kept on each row's k neighbours, zero elsewhere), ``mask``
      ``[n, n]`` (1 on the neighbours) and ``self_hsic`` (scalar, unbiased HSIC of ``masked`` with itself).
    """
    K = cosine_kernel(X)
    n = K.shape[0]
    idx = _topk_excluding_self(K, k)
    mask = jnp.zeros((n, n), jnp.float32).at[jnp.arange(n)[:, None], idx].set(1.0)
    masked = mask * K
    return {"masked": masked, "mask": mask, "self_hsic": _kernels.hsic_unbiased(masked, masked)}


def compare_cknna(prep_x, prep_y):
    """CKNNA from two :func:`prepare_cknna` preps (scalar; NaN when a self-HSIC is not positive)."""
    a = prep_x["masked"] * prep_y["mask"]
    b = prep_y["masked"] * prep_x["mask"]
    return _kernels.hsic_unbiased(a, b) / jnp.sqrt(prep_x["self_hsic"] * prep_y["self_hsic"])


@functools.partial(jax.jit, static_argnames=("k",))
def _mutual_knn(X, Y, k):
    return compare_mutual_knn(knn_indices(X, k), knn_indices(Y, k))


@functools.partial(jax.jit, static_argnames=("k",))
def _cycle_knn(X, Y, k):
    return compare_cycle_knn(knn_indices(X, k), knn_indices(Y, k))


@functools.partial(jax.jit, static_argnames=("k",))
def _cknna(X, Y, k):
    return compare_cknna(prepare_cknna(X, k), prepare_cknna(Y, k))


def _validate_k(name, n, k, k_min=1):
    if isinstance(k, bool) or int(k) != k:
        raise ValueError(f"{name}: k must be an integer, got {k!r}")
    if k < k_min:
        raise ValueError(f"{name}: k must be >= {k_min}, got k={k}")
    if k >= n:
        raise ValueError(f"{name}: k={k} neighbours need more than k stimuli (self is excluded), got n={n}; "
                         f"use k <= {n - 1}")


def _validate_mutual(n, widths, k=10):
    _validate_k("mutual_knn", n, k)


def _validate_cycle(n, widths, k=10):
    _validate_k("cycle_knn", n, k)


def _validate_cknna(n, widths, k=10):
    if n < 4:
        raise ValueError(f"cknna uses the unbiased HSIC estimator, which needs at least 4 stimuli, got n={n}")
    _validate_k("cknna", n, k, k_min=2)


def mutual_knn(X, Y, k: int = 10):
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024).

    Mean over stimuli of ``|N_X(i) ∩ N_Y(i)| / k``, with neighbours by cosine similarity (rows L2-normalised,
    self excluded, ties to the lower index). In [0, 1]; higher = more aligned; symmetric.

    Args:
      X: ``[n, p]`` activations; integer or float64 input is converted to float32.
      Y: ``[n, q]`` activations, rows paired with X.
      k: neighbours per stimulus, 1 <= k < n; static (one compilation per k).

    Returns:
      Scalar float32.
    """
    X, Y = check_pair(X, Y, min_n=2)
    _validate_mutual(X.shape[0], (X.shape[1], Y.shape[1]), k)
    return _mutual_knn(X, Y, int(k))


def cycle_knn(X, Y, k: int = 10):
    """Cycle k-nearest-neighbour accuracy (Huh et al. 2024): go from stimulus i to its k neighbours in Y, then from
    each of those to its k neighbours in X; score 1 if i is reached. Mean over stimuli, in [0, 1]; asymmetric
    (``cycle_knn(X, Y) != cycle_knn(Y, X)`` in general).

    Args:
      X: ``[n, p]`` activations (second hop).
      Y: ``[n, q]`` activations (first hop), rows paired with X.
      k: neighbours per stimulus, 1 <= k < n; static.

    Returns:
      Scalar float32.
    """
    X, Y = check_pair(X, Y, min_n=2)
    _validate_cycle(X.shape[0], (X.shape[1], Y.shape[1]), k)
    return _cycle_knn(X, Y, int(k))


def cknna(X, Y, k: int = 10):
    """Centered kernel nearest-neighbour alignment (Huh et al. 2024, appendix A).

    CKA of the cosine kernels restricted to mutual k-nearest-neighbour pairs, with the unbiased HSIC estimator:
    ``HSIC₁(M∘K, M∘L) / sqrt(HSIC₁(M_K∘K, M_K∘K) · HSIC₁(M_L∘L, M_L∘L))`` where ``M_K[i, j] = 1`` if j is among i's
    k neighbours in X, ``M = M_K ∘ M_L``. Higher = more aligned; not bounded to [-1, 1] in general. The
    reference estimator is not exactly symmetric in (X, Y) (its ``1ᵀAB1`` term), so neither is this one.

    Args:
      X: ``[n, p]`` activations (n >= 4).
      Y: ``[n, q]`` activations, rows paired with X.
      k: neighbours per stimulus, 2 <= k < n; static.

    Returns:
      Scalar float32.
    """
    X, Y = check_pair(X, Y, min_n=4)
    _validate_cknna(X.shape[0], (X.shape[1], Y.shape[1]), k)
    return _cknna(X, Y, int(k))


_KNN_INVARIANCES = frozenset({"rotation", "isotropic_scale", "stimulus_order"})

register_metric(
    Metric(
        name="mutual_knn",
        prepare=knn_indices,
        compare=compare_mutual_knn,
        symmetric=True,
        bounds=(0.0, 1.0),
        invariances=_KNN_INVARIANCES,
        not_invariant_to="permute_rows_of_one",
        min_n=3,
        defaults={"k": 10},
        static=frozenset({"k"}),
        prepare_kwargs=frozenset({"k"}),
        validate=_validate_mutual,
        reference="Huh, Cheung, Wang & Isola 2024, The Platonic Representation Hypothesis (ICML)",
        doc="mean fraction of shared cosine k-nearest neighbours",
    )
)

register_metric(
    Metric(
        name="cycle_knn",
        prepare=knn_indices,
        compare=compare_cycle_knn,
        symmetric=False,
        bounds=(0.0, 1.0),
        invariances=_KNN_INVARIANCES,
        not_invariant_to="permute_rows_of_one",
        min_n=3,
        defaults={"k": 10},
        static=frozenset({"k"}),
        prepare_kwargs=frozenset({"k"}),
        validate=_validate_cycle,
        reference="Huh, Cheung, Wang & Isola 2024, The Platonic Representation Hypothesis (ICML)",
        doc="fraction of stimuli recovered by a k-NN hop in Y then a k-NN hop in X",
    )
)

register_metric(
    Metric(
        name="cknna",
        prepare=prepare_cknna,
        compare=compare_cknna,
        symmetric=False,
        bounds=None,
        invariances=_KNN_INVARIANCES,
        not_invariant_to="permute_rows_of_one",
        min_n=4,
        defaults={"k": 10},
        static=frozenset({"k"}),
        prepare_kwargs=frozenset({"k"}),
        validate=_validate_cknna,
        reference="Huh, Cheung, Wang & Isola 2024, The Platonic Representation Hypothesis (ICML), appendix A",
        doc="CKA (unbiased HSIC) of cosine kernels restricted to mutual k-nearest neighbours",
    )
)
