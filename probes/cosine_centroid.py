"""Example custom probe, the simplest kind: a plain JAX function of one pair ``(X, Y)``, registered by decorator.

Load it by path (``align.load_probe("probes/cosine_centroid.py")``, or list the file under ``probes`` in a run
config); then ``align.pairwise("cosine_centroid", vision, language)`` batches it over every layer pair like a
built-in metric. A probe registered without ``prepare`` receives the raw ``[n, d]`` layers; inputs are validated
by the engine (finite, paired rows, at least ``min_n`` stimuli) before it is called.
"""

import jax.numpy as jnp

import align


@align.register_metric(
    name="cosine_centroid",
    symmetric=True,
    bounds=(-1.0, 1.0),
    invariances=frozenset({"rotation", "isotropic_scale", "translation", "stimulus_order"}),
    not_invariant_to="anisotropic_scale",
    min_n=3,
    pad_invariant=True,  # distances to the centroid do not change when zero feature columns are appended
    reference="example probe of the align toolkit",
)
def cosine_centroid(X, Y):
    """Cosine between the centered profiles of each stimulus' distance to the centroid, in X and in Y.

    Two representations agree when the same stimuli are typical (near the centroid) or atypical in both.
    Equals the Pearson correlation of the two distance profiles; higher = more aligned; in [-1, 1].

    Args:
      X: ``[n, p]`` activations.
      Y: ``[n, q]`` activations, rows paired with X.

    Returns:
      Scalar float32 (NaN if every stimulus is equally far from the centroid in X or in Y).
    """
    X, Y = X / jnp.max(jnp.abs(X)), Y / jnp.max(jnp.abs(Y))  # unit magnitude: float32 squares stay in range
    a = jnp.linalg.norm(X - jnp.mean(X, axis=0), axis=1)
    b = jnp.linalg.norm(Y - jnp.mean(Y, axis=0), axis=1)
    a = a - jnp.mean(a)
    b = b - jnp.mean(b)
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
