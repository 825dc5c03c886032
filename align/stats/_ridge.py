"""Ridge regression with an intercept and a penalty per target column chosen by exact leave-one-out error.

One training set (rows ``[m, p]``, padding rows masked by ``valid``) is decomposed once (:func:`ridge_basis`: a thin
SVD of the centered rows, ``r`` components); every target and every penalty then costs a projection and O(r) work
per column (:func:`ridge_solve`), and new rows are predicted through the basis (:func:`ridge_project`). This is what
``sklearn.linear_model.RidgeCV(alphas, alpha_per_target=True, fit_intercept=True)`` computes (Rifkin & Lippert 2007;
sklearn ``_RidgeGCV``). With U, s the left singular vectors and values, z = Uᵀyᶜ, g = α / (s² + α):

- LOO residual of training row i: ``eᵢ = (r0ᵢ + Σₖ Uᵢₖ gₖ zₖ) / (bᵢ + Σₖ Uᵢₖ² gₖ)`` where r0 = yᶜ − U z and
  ``bᵢ = 1 − 1/m − Σₖ Uᵢₖ²`` are the parts outside the span of X (both exactly 0 when X spans the whole centered
  training space, the dual regime). The ``−1/m`` is sklearn's intercept correction.
- GCV (Golub, Heath & Wahba 1979, ``selection="gcv"``): ``m (‖r0‖² + Σₖ gₖ² zₖ²)`` over ``(tr(I − H))²`` with
  ``tr(I − H) = m − 1 − Σₖ (1 − gₖ)`` (the intercept counted in H).
- Coefficients on the basis: ``zₖ / (sₖ² + α)``; a new row x is predicted as ``mu_y + ((x − mu_x) / sd_x) V s ·
  coefficients``.

Pure JAX: linear predictivity maps these over its folds; :func:`ridge_fit` / :func:`ridge_predict` are the
one-training-set form.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

HIGHEST = lax.Precision.HIGHEST
SELECTIONS = ("loo", "gcv")


def _mm(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


def loo_error_sums(alpha, U, U2, base, lev0, null, s2, Z, weights):
    """``[q]`` sums over the rows (each weighted; weight 0: a row that is not there) of the squared exact
    leave-one-out residuals of ridge with penalty ``alpha``, in the basis ``U`` ``[m, r]`` of the centered training
    predictors: numerator ``base + U ((g - null) Z)``, denominator ``lev0 + U² g`` with ``g = alpha / (s2 + alpha)``
    (``base = null * Yc``, ``lev0`` the leverage part that does not depend on alpha). The in-memory fit divides by
    the number of rows; the streamed one adds the sums of its row chunks."""
    g = alpha / (s2 + alpha)
    num = base + _mm(U, (g - null)[:, None] * Z)
    den = lev0 + _mm(U2, g)
    den = jnp.where(weights > 0, jnp.maximum(den, 1e-12), 1.0)
    e = num / den[:, None] * weights[:, None]
    return jnp.sum(e * e, axis=0)


class RidgeBasis(NamedTuple):
    """The decomposition of one centered training set (``m`` rows, ``p`` features, ``r`` components).

    Attributes:
      U: ``[m, r]`` left singular vectors (zero on padding rows and on dropped components).
      s2: ``[r]`` squared singular values (0 for dropped components).
      lev0: ``[m]`` the part of each training row outside the span of X (0 in the dual regime).
      null: scalar, 1 when X leaves part of the centered training space outside its span, else 0.
      B: ``[p, r]`` V s: centered rows times B are their coordinates on the basis (None where not needed).
      mu, sd: ``[p]`` training means and standard deviations (sd 1 unless scaled; None where not needed).
    """

    U: jax.Array
    s2: jax.Array
    lev0: jax.Array
    null: jax.Array
    B: jax.Array | None = None
    mu: jax.Array | None = None
    sd: jax.Array | None = None


def center_stats(X, valid, scale: bool = False):
    """Mean and standard deviation ``[p]`` of the rows of ``X [m, p]`` with ``valid`` = 1 (population std, 1 where
    it is 0; all ones unless ``scale``)."""
    n_t = jnp.sum(valid)
    mu = _mm(valid, X) / n_t
    if scale:
        var = _mm(valid, (X - mu) ** 2) / n_t
        sd = jnp.where(var > 0, jnp.sqrt(var), 1.0)
    else:
        sd = jnp.ones_like(mu)
    return mu, sd


def ridge_basis(X, valid, *, rank: int, scale: bool = False, pca_components: int = 0, tol: float) -> RidgeBasis:
    """Thin SVD of the centered (and, with ``scale``, standardised) valid rows of ``X [m, p]``.

    Args:
      X: ``[m, p]`` float32 training rows; rows with ``valid`` 0 are padding.
      valid: ``[m]`` float32 0/1.
      rank: components kept (static), at most ``min(m, p)``: the largest rank the centered rows can have.
      scale: divide by the training standard deviations (static).
      pca_components: 0 or k: keep only the k leading components (ridge on the training set's top-k principal
        components; static).
      tol: a component is kept when its singular value exceeds ``tol`` times the largest (numerical rank, as
        ``numpy.linalg.matrix_rank`` with ``tol = max(shape) * eps``).
    """
    n_t = jnp.sum(valid)
    mu, sd = center_stats(X, valid, scale)
    Xc = (X - mu) / sd * valid[:, None]
    U, s, Vt = jnp.linalg.svd(Xc, full_matrices=False)  # descending s
    U, s, Vt = U[:, :rank], s[:rank], Vt[:rank]
    keep = s > s[0] * tol
    if pca_components:
        keep = keep & (jnp.arange(s.shape[0]) < pca_components)
    # When X spans the whole centered training space (p >= m - 1 and full rank: the dual regime) the parts outside
    # its span are exactly zero; computing them as 1 - 1/m - sum(U²) would leave float32 noise that dominates the
    # LOO denominators at small alphas.
    spans_all = jnp.sum(keep.astype(jnp.float32)) >= n_t - 1
    U = U * keep.astype(jnp.float32) * valid[:, None]
    s2 = jnp.where(keep, s * s, 0.0)
    B = Vt.T * jnp.where(keep, s, 0.0)  # Xcᵀ U = V s   [p, r]
    lev0 = jnp.where(spans_all, 0.0, 1.0 - 1.0 / n_t - jnp.sum(U * U, axis=1)) * valid
    return RidgeBasis(U=U, s2=s2, lev0=lev0, null=jnp.where(spans_all, 0.0, 1.0), B=B, mu=mu, sd=sd)


def ridge_project(basis: RidgeBasis, X):
    """Coordinates ``[k, r]`` of new rows ``X [k, p]`` on the basis (centered and scaled with the training stats)."""
    return _mm((X - basis.mu) / basis.sd, basis.B)


def ridge_solve(basis: RidgeBasis, Yc, valid, alphas, *, alpha_per_target: bool = True, selection: str = "loo"):
    """Penalties chosen by leave-one-out (or GCV) error and the coefficients on the basis.

    Args:
      basis: :func:`ridge_basis` of the training predictors (``U``, ``s2``, ``lev0``, ``null`` are read).
      Yc: ``[m, q]`` training targets, centered (and scaled) with their training statistics, 0 on padding rows.
      valid: ``[m]`` 0/1 training rows.
      alphas: ``[A]`` candidate penalties (traced: sweeping them does not recompile).
      alpha_per_target: one penalty per target column (else one for all, by the mean error over columns).
      selection: ``"loo"`` (exact, as sklearn) or ``"gcv"``; static.

    Returns:
      (coefficients ``[r, q]``: predictions are ``ridge_project(basis, X) @ coefficients``, chosen alphas ``[q]``).
    """
    U, s2, lev0, null = basis.U, basis.s2, basis.lev0, basis.null
    n_t = jnp.sum(valid)
    Z = _mm(U.T, Yc)  # [r, q]
    if selection == "loo":
        U2 = U * U
        base = null * Yc  # the numerator r0 + U (g z), r0 = null (yc - U z), as null yc + U ((g - null) z)

        def error(alpha):
            return loo_error_sums(alpha, U, U2, base, lev0, null, s2, Z, valid) / n_t
    else:
        # ||r0||² = ||yc||² - ||z||² (U has orthonormal columns on the training rows): no [m, q] residual needed
        r0_sq = null * jnp.maximum(jnp.sum(Yc * Yc, axis=0) - jnp.sum(Z * Z, axis=0), 0.0)
        Z2 = Z * Z

        def error(alpha):
            g = alpha / (s2 + alpha)
            rss = r0_sq + _mm(g * g, Z2)
            dof = n_t - 1.0 - jnp.sum(1.0 - g)  # tr(I - H), the intercept included in H
            return (rss / n_t) / (dof / n_t) ** 2

    alphas = jnp.asarray(alphas, jnp.float32)
    # LOO: one alpha at a time bounds memory to one [m, q] residual; GCV: all alphas at once ([A, q] only).
    errors = lax.map(error, alphas) if selection == "loo" else jax.vmap(error)(alphas)  # [A, q]
    if alpha_per_target:
        best = jnp.argmin(errors, axis=0)  # first of equal errors, as sklearn
    else:
        best = jnp.full(errors.shape[1], jnp.argmin(jnp.mean(errors, axis=1)))
    chosen = alphas[best]
    return Z / (s2[:, None] + chosen[None, :]), chosen


class RidgeFit(NamedTuple):
    """A ridge model fitted on one training set: :func:`ridge_predict` applies it."""

    basis: RidgeBasis
    coef: jax.Array   # [r, q] coefficients on the basis
    mu_y: jax.Array   # [q] training target means
    alphas: jax.Array  # [q] chosen penalties


@jax.jit
def ridge_fit(X, Y, alphas) -> RidgeFit:
    """Ridge regression X -> Y with an intercept and one penalty per target column chosen by exact LOO.

    Args:
      X: ``[m, p]`` training predictors.
      Y: ``[m, q]`` training targets.
      alphas: ``[A]`` candidate penalties.
    """
    X = jnp.asarray(X, jnp.float32)
    Y = jnp.asarray(Y, jnp.float32)
    m, p = X.shape
    valid = jnp.ones(m, jnp.float32)
    basis = ridge_basis(X, valid, rank=min(m, p), tol=max(m, p) * float(jnp.finfo(jnp.float32).eps))
    mu_y = jnp.mean(Y, axis=0)
    coef, chosen = ridge_solve(basis, Y - mu_y, valid, alphas)
    return RidgeFit(basis, coef, mu_y, chosen)


@jax.jit
def ridge_predict(fit: RidgeFit, X):
    """Predictions ``[k, q]`` of a :func:`ridge_fit` model for new rows ``X [k, p]``."""
    return _mm(ridge_project(fit.basis, jnp.asarray(X, jnp.float32)), fit.coef) + fit.mu_y
