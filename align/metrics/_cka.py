"""Centered kernel alignment: linear CKA (Kornblith et al. 2019) and RBF CKA, biased or debiased.

Prepare/compare split: ``prepare`` turns one layer ``[n, d]`` into its centered Gram ``[n, n]`` scaled to unit
Frobenius norm (double-centered for the biased HSIC, U-centered for the unbiased HSIC of Song et al. 2012), so that
``compare`` is the Frobenius inner product of two such matrices — one dot product of length n² per pair, whatever
the widths. For the linear kernel ``<Kc, Lc>_F = ‖Ycᵀ Xc‖²_F``, which is Kornblith's formula.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from align.metrics import _kernels
from align.metrics._rdm import condensed_median
from align.metrics._registry import Metric
from align.metrics._registry import register_metric
from align.metrics._validate import check_pair

# --------------------------------------------------------------------------------------------------------------
# prepare / compare (pure JAX; the engine batches these)


def _centered_unit(K, debiased: bool):
    K = _kernels.u_center(K) if debiased else _kernels.double_center(K)
    return _kernels.unit_frobenius(K)


def prepare_linear_cka(X, debiased: bool = False):
    """Per-layer work of linear CKA.

    Args:
      X: ``[n, d]`` activations (rows = stimuli).
      debiased: U-center (unbiased HSIC, needs n >= 4) instead of double-centering.

    Returns:
      ``[n, n]`` float32: the centered linear Gram ``Xc Xcᵀ`` divided by its Frobenius norm (NaN for a constant X).
      ``Xc`` is brought to unit magnitude first (:func:`align.metrics._kernels.unit_scale`), so activations scaled
      by 1e-12 or 1e8 give the same matrix (their squared Gram entries would underflow or overflow float32).
    """
    Xc = _kernels.unit_scale(_kernels.center_columns(X))
    return _centered_unit(_kernels.gram(Xc), debiased)


def rbf_gram(X, sigma_frac=1.0):
    """RBF kernel ``K_ij = exp(−‖xᵢ − xⱼ‖² / (2σ²))`` with ``σ² = sigma_frac² · median`` of the off-diagonal squared
    distances of ``X`` (its own median, so the kernel is invariant to isotropic scaling). ``[n, d] -> [n, n]``.

    The median is exactly ``jnp.median`` of the n (n − 1) / 2 distances, found by an int32-key sort
    (:func:`align.metrics._rdm.condensed_median`: 0.13 s instead of 0.54 s of CPU at n = 2000, one core)."""
    D = _kernels.squared_distances(_kernels.unit_scale(X))  # exact power-of-two rescaling: D / σ² is unchanged
    sigma2 = jnp.asarray(sigma_frac, jnp.float32) ** 2 * condensed_median(D)
    return jnp.exp(-D / (2.0 * sigma2))


def prepare_rbf_cka(X, sigma_frac=1.0, debiased: bool = False):
    """Per-layer work of RBF CKA: the centered RBF Gram (see :func:`rbf_gram`) at unit Frobenius norm, ``[n, n]``."""
    return _centered_unit(rbf_gram(X, sigma_frac), debiased)


def compare_cka(prep_x, prep_y):
    """CKA from two prepared Grams ``[n, n]``: their Frobenius inner product (a scalar)."""
    return jnp.sum(prep_x * prep_y)


# --------------------------------------------------------------------------------------------------------------
# public functions of (X, Y)


@functools.partial(jax.jit, static_argnames=("debiased",))
def _linear_cka(X, Y, debiased):
    return compare_cka(prepare_linear_cka(X, debiased), prepare_linear_cka(Y, debiased))


@functools.partial(jax.jit, static_argnames=("debiased",))
def _rbf_cka(X, Y, sigma_frac, debiased):
    return compare_cka(prepare_rbf_cka(X, sigma_frac, debiased), prepare_rbf_cka(Y, sigma_frac, debiased))


def linear_cka(X, Y, debiased: bool = False):
    """Linear centered kernel alignment (Kornblith et al. 2019).

    Columns are centered; biased CKA is ``‖Ycᵀ Xc‖²_F / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F)`` in [0, 1]. With ``debiased=True``
    each HSIC is the unbiased estimator of Song et al. (2012) on ``K = XXᵀ``, ``L = YYᵀ`` (needs n >= 4; the value
    can be slightly negative). Higher = more aligned. Invariant to rotation, isotropic scaling and translation of
    either input; not to anisotropic scaling.

    Args:
      X: ``[n, p]`` activations; integer or float64 input is converted to float32.
      Y: ``[n, q]`` activations, rows paired with X.
      debiased: use the unbiased HSIC estimator.

    Returns:
      Scalar float32 array.

    Raises:
      MetricInputError: non-finite values, unequal n, n too small, or a constant (zero-variance) input.
    """
    X, Y = check_pair(X, Y, min_n=4 if debiased else 3, require_variance=True)
    return _linear_cka(X, Y, bool(debiased))


def rbf_cka(X, Y, sigma_frac=1.0, debiased: bool = False):
    """CKA with RBF kernels whose bandwidth follows the median heuristic per matrix.

    ``K_ij = exp(−‖xᵢ − xⱼ‖² / (2σ²))`` with ``σ² = sigma_frac² · median`` of the off-diagonal squared distances of
    that matrix; then CKA as in :func:`linear_cka` (biased, or debiased with Song et al.'s estimator). Higher = more
    aligned; invariant to rotation, isotropic scaling and translation.

    Args:
      X: ``[n, p]`` activations.
      Y: ``[n, q]`` activations, rows paired with X.
      sigma_frac: bandwidth as a fraction of the median distance (> 0); traced, so sweeping it does not recompile.
      debiased: use the unbiased HSIC estimator (n >= 4).

    Returns:
      Scalar float32 array.
    """
    X, Y = check_pair(X, Y, min_n=4 if debiased else 3, require_variance=True)
    _validate_rbf(X.shape[0], (X.shape[1], Y.shape[1]), sigma_frac=sigma_frac, debiased=debiased)
    return _rbf_cka(X, Y, jnp.float32(sigma_frac), bool(debiased))


# --------------------------------------------------------------------------------------------------------------
# registration


def _validate_linear(n, widths, debiased=False):
    if debiased and n < 4:
        raise ValueError(f"linear_cka(debiased=True) needs at least 4 stimuli, got n={n}; use debiased=False")


def _validate_rbf(n, widths, sigma_frac=1.0, debiased=False):
    if not float(sigma_frac) > 0:
        raise ValueError(f"rbf_cka: sigma_frac must be > 0, got {sigma_frac}")
    if debiased and n < 4:
        raise ValueError(f"rbf_cka(debiased=True) needs at least 4 stimuli, got n={n}; use debiased=False")


register_metric(
    Metric(
        name="linear_cka",
        prepare=prepare_linear_cka,
        compare=compare_cka,
        symmetric=True,
        bounds=(-1.0, 1.0),
        invariances=frozenset({"rotation", "isotropic_scale", "translation", "stimulus_order"}),
        not_invariant_to="anisotropic_scale",
        min_n=3,
        defaults={"debiased": False},
        static=frozenset({"debiased"}),
        prepare_kwargs=frozenset({"debiased"}),
        validate=_validate_linear,
        pad_invariant=True,  # zero columns leave the Gram matrix X Xᵀ unchanged
        reference="Kornblith et al. 2019, Similarity of Neural Network Representations Revisited; "
        "unbiased HSIC: Song et al. 2012",
        doc="linear centered kernel alignment (biased in [0, 1]; debiased may be slightly negative)",
    )
)

register_metric(
    Metric(
        name="rbf_cka",
        prepare=prepare_rbf_cka,
        compare=compare_cka,
        symmetric=True,
        bounds=(-1.0, 1.0),
        invariances=frozenset({"rotation", "isotropic_scale", "translation", "stimulus_order"}),
        not_invariant_to="anisotropic_scale",
        min_n=3,
        defaults={"sigma_frac": 1.0, "debiased": False},
        static=frozenset({"debiased"}),
        prepare_kwargs=frozenset({"sigma_frac", "debiased"}),
        validate=_validate_rbf,
        pad_invariant=True,  # zero columns leave every pairwise distance unchanged
        reference="Kornblith et al. 2019 (RBF kernel, bandwidth a fraction of the median distance)",
        doc="CKA with RBF kernels, sigma² = sigma_frac² × median off-diagonal squared distance (per matrix)",
    )
)
