"""Topological RSA (Lin & Kriegeskorte, "The topology and geometry of neural representations", PNAS 2024).

Each RDM goes through the geo-topological transform before the two are compared as in RSA. Quantiles are taken
per RDM (rsatoolbox's ``geotopological_transform`` pools them across all RDMs it is given, which would make a
layer's value depend on the other layers in the call). ``low`` and ``high`` are traced, so sweeping them does not
recompile.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from align.metrics import _kernels
from align.metrics._rdm import condensed
from align.metrics._rdm import condensed_indices
from align.metrics._rdm import condensed_rdm
from align.metrics._rdm import sort_float32
from align.metrics._registry import Metric
from align.metrics._registry import register_metric
from align.metrics._rsa import _validate_rsa
from align.metrics._rsa import average_rank
from align.metrics._rsa import check_rdm_pair
from align.metrics._rsa import compare_rsa
from align.metrics._rsa import rdm_vector_unit
from align.metrics._rsa import tie_counts


def _square_from_condensed(v, n: int):
    i, j = condensed_indices(n)
    W = jnp.zeros((n, n), v.dtype).at[i, j].set(v)
    return W + W.T


def _n_from_condensed(m: int) -> int:
    n = int(round((1 + (1 + 8 * m) ** 0.5) / 2))
    if n * (n - 1) // 2 != m:
        raise ValueError(f"a condensed RDM has length n (n - 1) / 2; {m} is not such a length")
    return n


def geodesic_distances(f, n: int | None = None):
    """Shortest-path distances over the graph of a geo-topological RDM, rescaled to [0, 1].

    The graph's edges are the pairs with ``f < 1``, weighted by ``f``; pairs with ``f = 1`` are not edges.
    All-pairs shortest paths by Floyd–Warshall (``lax.fori_loop`` over the n intermediate nodes, O(n³)); the
    finite distances are divided by their maximum and unreachable pairs get 1.

    Args:
      f: ``[n (n − 1) / 2]`` condensed transformed RDM with values in [0, 1].
      n: number of stimuli (inferred from the length when omitted).

    Returns:
      ``[n (n − 1) / 2]`` float32 in [0, 1].
    """
    f = jnp.asarray(f, jnp.float32)
    n = _n_from_condensed(f.shape[0]) if n is None else n
    W = _square_from_condensed(f, n)
    D = jnp.where(W < 1.0, W, jnp.inf)
    D = jnp.where(jnp.eye(n, dtype=bool), 0.0, D)

    def relax(k, D):
        return jnp.minimum(D, D[:, k][:, None] + D[k, :][None, :])

    D = lax.fori_loop(0, n, relax, D)
    g = condensed(D)
    finite = jnp.isfinite(g)
    top = jnp.max(jnp.where(finite, g, 0.0))
    scaled = g / jnp.where(top > 0, top, 1.0)
    return jnp.where(finite, scaled, 1.0)


def _quantiles_of_sorted(sorted_v, low, high):
    """The ``low`` and ``high`` quantiles of ascending ``sorted_v`` ``[m]``, linear interpolation (``numpy.quantile``).

    The same float32 arithmetic as ``jnp.quantile``: position ``q (m − 1)``, ``a (1 − w) + b w`` between its floor
    and ceiling.
    """
    m = sorted_v.shape[0]
    position = jnp.stack([jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)]) * jnp.float32(m - 1)
    floor, ceil = jnp.floor(position), jnp.ceil(position)
    weight = position - floor
    a = sorted_v[jnp.clip(floor, 0, m - 1).astype(jnp.int32)]
    b = sorted_v[jnp.clip(ceil, 0, m - 1).astype(jnp.int32)]
    lo, hi = a * (1.0 - weight) + b * weight
    return lo, hi


def _transform(v, lo, hi):
    span = hi - lo
    return jnp.where(
        span > 0,
        jnp.clip((v - lo) / jnp.where(span > 0, span, 1.0), 0.0, 1.0),
        (v > lo).astype(jnp.float32),
    )


def geotopological_transform(v, low=0.2, high=0.8, geodesic: bool = False):
    """Geo-topological transform of one condensed RDM (Lin & Kriegeskorte 2024).

    With ``l`` and ``u`` the ``low`` and ``high`` quantiles of this RDM's values (linear interpolation, as
    ``numpy.quantile``): ``f(d) = 0`` if ``d <= l``, ``1`` if ``d >= u``, ``(d − l) / (u − l)`` in between
    (when ``u == l``: 0 up to ``l``, 1 above). ``geodesic=True`` replaces ``f`` by shortest-path distances
    (see :func:`geodesic_distances`).

    Args:
      v: ``[m]`` condensed RDM, ``m = n (n − 1) / 2``, no NaN.
      low: lower quantile in [0, 1); traced.
      high: upper quantile in (low, 1]; traced.
      geodesic: static.

    Returns:
      ``[m]`` float32 in [0, 1].
    """
    v = jnp.asarray(v, jnp.float32)
    lo, hi = _quantiles_of_sorted(sort_float32(v), low, high)
    f = _transform(v, lo, hi)
    if geodesic:
        f = geodesic_distances(f)
    return f


def geotopological_ranks(v, low=0.2, high=0.8):
    """Average ranks (from 1) of ``geotopological_transform(v, low, high)`` from a single sort of ``v``.

    The transform is monotone, so its ranks follow from those of ``v``: the entries ``<= l`` all become 0 (one tie
    block, average rank ``(c_low + 1) / 2``), those ``>= u`` all become 1 (the last ``c_high`` positions), and in
    between ``f`` is strictly increasing, so an entry keeps the average rank of its value in ``v``. ``l`` and ``u``
    are read from the same sort (:func:`align.metrics._rsa.tie_counts`). The middle band is ranked by ``d`` itself,
    so two values whose float32 ``(d − l) / (u − l)`` happen to round to the same number keep their order (the
    exact transform is strictly increasing there).

    Args:
      v: ``[m]`` condensed RDM, no NaN.
      low, high: quantiles as in :func:`geotopological_transform` (traced).

    Returns:
      ``[m]`` float32 ranks, as ``scipy.stats.rankdata(f, "average")`` of the exact transform ``f``.
    """
    v = jnp.asarray(v, jnp.float32)
    m = v.shape[0]
    sorted_v, below, upto = tie_counts(v)
    lo, hi = _quantiles_of_sorted(sorted_v, low, high)
    in_low = v <= lo
    in_high = (v >= hi) & ~in_low  # when u == l, f is 1 exactly above l
    c_low = jnp.sum(in_low, dtype=jnp.int32)
    c_high = jnp.sum(in_high, dtype=jnp.int32)
    first = jnp.where(in_low, 0, jnp.where(in_high, m - c_high, below))
    stop = jnp.where(in_low, c_low, jnp.where(in_high, m, upto))
    return average_rank(first, stop)


def prepare_topological_rsa(X, low=0.2, high=0.8, rdm: str = "correlation", compare: str = "spearman",
                            geodesic: bool = False):
    """Per-layer work: condensed ``rdm`` of ``X`` ``[n, d]``, geo-topological transform, then the unit vector for
    ``compare`` (see :func:`align.metrics._rsa.rdm_vector_unit`). Returns ``[n (n − 1) / 2]`` float32.

    For ``compare="spearman"`` without ``geodesic`` the ranks of the transformed RDM come from one sort of the RDM
    (:func:`geotopological_ranks`), then are centered and normalised as Spearman's ranks are."""
    v = condensed_rdm(_kernels.unit_scale(X), rdm)  # exact power of two, as in RSA: squares stay in range
    if compare == "spearman" and not geodesic:
        return rdm_vector_unit(geotopological_ranks(v, low, high), "pearson")
    return rdm_vector_unit(geotopological_transform(v, low, high, geodesic), compare)


@functools.partial(jax.jit, static_argnames=("rdm", "compare", "geodesic"))
def _topological_rsa(X, Y, low, high, rdm, compare, geodesic):
    px = prepare_topological_rsa(X, low, high, rdm, compare, geodesic)
    py = prepare_topological_rsa(Y, low, high, rdm, compare, geodesic)
    return compare_rsa(px, py)


def _validate_topological(n, widths, low=0.2, high=0.8, rdm="correlation", compare="spearman", geodesic=False):
    _validate_rsa(n, widths, rdm=rdm, compare=compare)
    low, high = float(low), float(high)
    if not (0.0 <= low < high <= 1.0):
        raise ValueError(f"topological_rsa needs 0 <= low < high <= 1, got low={low}, high={high}")
    if geodesic and low > 0.0:
        # pairs below the low quantile become zero-length edges, which usually join every stimulus at distance 0:
        # the transformed RDM is then constant and the score NaN. Refuse rather than return a silent NaN.
        raise ValueError(f"topological_rsa(geodesic=True) needs low=0 (got low={low}): with low > 0 the pairs below "
                         "the low quantile become zero-length edges and the geodesic RDM collapses to a constant")


def topological_rsa(X, Y, low=0.2, high=0.8, rdm: str = "correlation", compare: str = "spearman",
                    geodesic: bool = False):
    """RSA on geo-topologically transformed RDMs (Lin & Kriegeskorte 2024).

    Each RDM is thresholded at its own ``low`` and ``high`` quantiles (see :func:`geotopological_transform`):
    small dissimilarities become 0 (same neighbourhood), large ones 1 (far apart), in between linear. With
    ``geodesic=True`` the result is replaced by shortest-path distances over the graph of pairs below the upper
    threshold. The two transformed RDMs are then compared as in :func:`align.metrics.rsa`.

    Args:
      X: ``[n, p]`` activations; integer or float64 input is converted to float32.
      Y: ``[n, q]`` activations, rows paired with X.
      low: lower quantile, 0 <= low < high.
      high: upper quantile, <= 1.
      rdm: dissimilarity kind (see :func:`align.metrics.rdm`).
      compare: ``"spearman"`` (average ranks; the transformed RDMs have many ties), ``"pearson"`` or ``"cosine"``.
      geodesic: use geodesic (shortest-path) distances; O(n³). Pairs below the ``low`` quantile become
        zero-length edges, which usually connect the whole graph at distance 0 when ``low`` is more than a few
        percent (the transformed RDM is then constant and the score NaN); with ``geodesic=True`` use ``low=0``
        or a small value.

    Returns:
      Scalar float32 in [-1, 1]; higher = more aligned. NaN when a transformed RDM is constant.
    """
    X, Y = check_rdm_pair(X, Y, rdm)
    _validate_topological(X.shape[0], (X.shape[1], Y.shape[1]), low, high, rdm, compare, geodesic)
    return _topological_rsa(X, Y, jnp.float32(low), jnp.float32(high), rdm, compare, bool(geodesic))


register_metric(
    Metric(
        name="topological_rsa",
        prepare=prepare_topological_rsa,
        compare=compare_rsa,
        symmetric=True,
        bounds=(-1.0, 1.0),
        invariances=frozenset({"isotropic_scale", "stimulus_order"}),
        not_invariant_to="permute_rows_of_one",
        min_n=3,
        defaults={"low": 0.2, "high": 0.8, "rdm": "correlation", "compare": "spearman", "geodesic": False},
        static=frozenset({"rdm", "compare", "geodesic"}),
        prepare_kwargs=frozenset({"low", "high", "rdm", "compare", "geodesic"}),
        validate=_validate_topological,
        reference="Lin & Kriegeskorte 2024, The topology and geometry of neural representations (PNAS)",
        doc="RSA after the geo-topological transform (per-RDM quantiles low/high; optional geodesic distances)",
        pad_invariant=False,  # as rsa: correlation-distance RDMs (the default) change under zero feature columns
    )
)
