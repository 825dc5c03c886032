"""Example custom probe with a prepare/compare split, so per-layer work is done once per layer, not per pair.

``prepare`` turns a layer into its standardized centered Gram matrix (``[n, n]``, whatever the width), ``compare``
is then a single elementwise product and sum per layer pair. Load it with
``align.load_probe("probes/gram_correlation.py")``; then ``align.pairwise("gram_correlation", Xs, Ys)``.
"""

import jax.numpy as jnp
from jax import lax

import align


def prepare_gram_correlation(X):
    """``[n, d] -> [n, n]``: the centered linear Gram ``Xc Xcᵀ`` with its off-diagonal entries z-scored and the
    diagonal set to 0."""
    Xc = X - jnp.mean(X, axis=0)
    Xc = Xc / jnp.max(jnp.abs(Xc))  # unit magnitude: the Gram's squares stay in float32 range
    K = jnp.matmul(Xc, Xc.T, precision=lax.Precision.HIGHEST)
    n = K.shape[0]
    off = 1.0 - jnp.eye(n, dtype=K.dtype)
    count = n * (n - 1)
    mean = jnp.sum(K * off) / count
    centered = (K - mean) * off
    return centered / jnp.sqrt(jnp.sum(centered * centered) / count)


def compare_gram_correlation(prep_x, prep_y):
    """Pearson correlation of the off-diagonal Gram entries of the two layers (a scalar in [-1, 1])."""
    n = prep_x.shape[0]
    return jnp.sum(prep_x * prep_y) / (n * (n - 1))


align.register_metric(
    align.Metric(
        name="gram_correlation",
        prepare=prepare_gram_correlation,
        compare=compare_gram_correlation,
        symmetric=True,
        bounds=(-1.0, 1.0),
        invariances=frozenset({"rotation", "isotropic_scale", "translation", "stimulus_order"}),
        not_invariant_to="anisotropic_scale",
        min_n=3,
        pad_invariant=True,  # zero feature columns leave the Gram matrix unchanged
        reference="example probe of the align toolkit (an RSA on centered linear-kernel similarities)",
        doc="Pearson correlation between the off-diagonal entries of the two centered Gram matrices",
    )
)
