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
indices (compare is O(n k²)); ``cknna`` keeps the indices (sorted), the kernel values on them and, per neighbour,
the slot of the reverse edge (all ``[n, k]``), and its compare is O(n k log k): every term of the unbiased HSIC of
two matrices that vanish off the neighbour pairs is a sum over those pairs (see :func:`_hsic_unbiased_on_neighbours`).
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
    """Cosine similarities between rows, ``[n, d] -> [n, n]`` (zero rows give 0). Each row is brought to unit
    magnitude first (:func:`align.metrics._kernels.unit_scale`, exact), so its norm neither underflows nor
    overflows."""
    X = _kernels.unit_scale(X, axis=1)
    norm = jnp.linalg.norm(X, axis=1, keepdims=True)
    Xn = X / jnp.where(norm > 0, norm, 1.0)
    return _kernels.matmul(Xn, Xn.T)


def _topk_excluding_self(K, k: int):
    """``(values, indices)``, each ``[n, k]``: the k largest entries of each row of ``K`` off the diagonal."""
    n = K.shape[0]
    S = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, K)
    return lax.top_k(S, k)


def knn_indices(X, k: int = 10):
    """Indices of each row's ``k`` nearest neighbours by cosine similarity (self excluded, ties to the lower
    index), most similar first. ``[n, d] -> [n, k]`` int32."""
    return _topk_excluding_self(cosine_kernel(X), k)[1]


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


def _find_in_rows(sorted_rows, rows, values):
    """Where each value sits in a row of ``sorted_rows``: a vectorised binary search, O(log k) gathers per query.

    Args:
      sorted_rows: ``[n, k]`` int32, each row strictly increasing.
      rows, values: int32 arrays of one shape: query e looks for ``values[e]`` in row ``rows[e]``.

    Returns:
      ``(slot, found)``: ``slot`` is where the value is (clipped to k − 1 when absent) and ``found`` whether it is.
    """
    k = sorted_rows.shape[1]
    lo = jnp.zeros(values.shape, jnp.int32)
    hi = jnp.full(values.shape, k, jnp.int32)
    for _ in range(k.bit_length()):  # lower bound in [lo, hi); ceil(log2(k + 1)) halvings empty every interval
        active = lo < hi
        mid = (lo + hi) // 2
        less = sorted_rows[rows, jnp.minimum(mid, k - 1)] < values
        lo = jnp.where(active & less, mid + 1, lo)
        hi = jnp.where(active & ~less, mid, hi)
    slot = jnp.minimum(lo, k - 1)
    return slot, sorted_rows[rows, slot] == values


def _reverse_slots(idx):
    """For each neighbour pair (i, j = ``idx[i, s]``): the slot ``t`` with ``idx[j, t] == i``, or ``k`` when i is
    not among j's neighbours. ``idx``: ``[n, k]`` int32, rows strictly increasing. ``[n, k]`` int32, O(n k log k)."""
    n, k = idx.shape
    slot, found = _find_in_rows(idx, idx, jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], (n, k)))
    return jnp.where(found, slot, k)


def _hsic_unbiased_on_neighbours(idx, rev, a, b):
    """Unbiased HSIC (Song et al. 2012, eq. 5, as in Huh et al. 2024's code, diagonals zero) of two ``[n, n]``
    matrices that are zero off the neighbour pairs, from their values on those pairs. O(n k).

    ``A[i, idx[i, s]] = a[i, s]`` and ``B[i, idx[i, s]] = b[i, s]`` (``idx``, ``a``, ``b``: ``[n, k]``; ``idx``
    rows hold distinct indices other than i, so the diagonals are zero and no entry is counted twice); ``rev`` is
    :func:`_reverse_slots` of ``idx``. The dense estimator is ``(tr(A B) + 1ᵀA1 · 1ᵀB1 / ((n − 1)(n − 2)) −
    2 · 1ᵀA B1 / (n − 2)) / (n (n − 3))`` with

    - ``tr(A B) = Σ_ij A_ij B_ji``: over the pairs, ``a[i, s]`` times B at the reverse edge (j, i), which is
      ``b[j, rev[i, s]]`` if i is among j's neighbours and 0 otherwise;
    - ``1ᵀA1``, ``1ᵀB1``: the sums of ``a`` and ``b``;
    - ``1ᵀA B1 = Σ_j (column sum j of A)(row sum j of B) = Σ_i Σ_s a[i, s] · rowsum_B[idx[i, s]]`` (a gather of B's
      row sums instead of a scatter of A's column sums).

    The first and third terms are subtracted pair by pair before summing: that halved the float32 error when k is a
    large fraction of n (where they nearly cancel), down to the dense estimator's.
    """
    n = idx.shape[0]
    b_rev = jnp.concatenate([b, jnp.zeros_like(b[:, :1])], axis=1)[idx, rev]  # B[j, i] at each pair (i, j)
    b_rowsum_at_col = jnp.sum(b, axis=1)[idx]  # row sum of B at row j, for each pair (i, j)
    value = jnp.sum(a * (b_rev - (2.0 / (n - 2)) * b_rowsum_at_col))
    value = value + jnp.sum(a) * jnp.sum(b) / ((n - 1) * (n - 2))
    return value / (n * (n - 3))


def prepare_cknna(X, k: int = 10):
    """Per-layer work of CKNNA: the cosine kernel on each row's k neighbours, O(n k) to keep.

    Returns:
      dict with ``idx`` ``[n, k]`` int32 (each row's neighbour indices, as :func:`knn_indices` but in increasing
      order), ``kernel`` ``[n, k]`` (cosine similarity of row i to ``idx[i, s]``), ``rev`` ``[n, k]`` int32
      (:func:`_reverse_slots`) and ``self_hsic`` (scalar, unbiased HSIC of the neighbour-masked kernel with itself).
    """
    kernel, idx = _topk_excluding_self(cosine_kernel(X), k)
    idx, kernel = lax.sort((idx, kernel), dimension=1, num_keys=1)
    rev = _reverse_slots(idx)
    return {"idx": idx, "kernel": kernel, "rev": rev,
            "self_hsic": _hsic_unbiased_on_neighbours(idx, rev, kernel, kernel)}


def compare_cknna(prep_x, prep_y):
    """CKNNA from two :func:`prepare_cknna` preps (scalar; NaN when a self-HSIC is not positive). O(n k log k).

    The mutual-neighbour pairs are the X-neighbour pairs (i, ``idx_x[i, s]``) whose index is also among i's
    Y-neighbours (found by binary search in Y's sorted row i); both masked kernels live on them, so they are indexed
    by X's slots: ``a`` = the X kernel there, ``b`` = the Y kernel there (at the matching Y slot), zero elsewhere.
    """
    idx_x = prep_x["idx"]
    n, k = idx_x.shape
    rows = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], (n, k))
    slot_y, mutual = _find_in_rows(prep_y["idx"], rows, idx_x)
    a = jnp.where(mutual, prep_x["kernel"], 0.0)
    b = jnp.where(mutual, prep_y["kernel"][rows, slot_y], 0.0)
    hsic = _hsic_unbiased_on_neighbours(idx_x, prep_x["rev"], a, b)
    return hsic / jnp.sqrt(prep_x["self_hsic"] * prep_y["self_hsic"])


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
        pad_invariant=True,  # zero columns leave norms and dot products, hence cosine neighbours, unchanged
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
        pad_invariant=True,  # cosine neighbours: unchanged by zero columns
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
        pad_invariant=True,  # cosine kernels and neighbours: unchanged by zero columns
        reference="Huh, Cheung, Wang & Isola 2024, The Platonic Representation Hypothesis (ICML), appendix A",
        doc="CKA (unbiased HSIC) of cosine kernels restricted to mutual k-nearest neighbours",
    )
)
