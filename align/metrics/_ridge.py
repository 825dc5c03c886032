"""Linear predictivity: how well cross-validated ridge regression from one layer predicts another (X → Y).

For each outer fold (sklearn ``KFold(folds, shuffle=True, random_state=seed)``, or fold ids given per stimulus) the
training rows of X and Y are centered with their training means (the intercept) and, with ``scale=True``, divided
by their training standard deviations (population std, as ``StandardScaler``). For every target column the ridge
penalty is chosen from ``alphas`` by the exact leave-one-out (LOO) squared error on the training fold, exactly as
``sklearn.linear_model.RidgeCV(alphas, alpha_per_target=True, fit_intercept=True)`` does (Rifkin & Lippert 2007;
sklearn ``_RidgeGCV``), and the held-out rows are predicted. The score is the Pearson r per target column between
the held-out predictions and Y within each held-out fold, averaged over the target columns that vary in that fold,
then over the folds (``score="r2"``: the coefficient of determination of each fold instead). This is Brain-Score's
convention (Schrimpf et al. 2018) and is centred on zero when X and Y share nothing. One r over the concatenated
out-of-fold predictions of all folds (``cv_score="pooled"``, the earlier default) is biased below zero under that
null: each fold's intercept is its training rows' mean, so a fold whose held-out mean sits above the overall mean is
predicted below it, which anti-correlates predictions and targets across folds (-0.07 on 300 COCO images, see
README "Method defaults"). Higher = more aligned. Every comparison also reports the chosen penalties (median, and the
share at either end of the grid; :class:`AlphaGridWarning` above :data:`ALPHA_EDGE_WARN`).

Prepare once, compare per pair: :func:`prepare_linear_predictivity` does one thin SVD per training fold of the
centered X (``align.stats.ridge_basis``), keeping ``r = min(p, n_train - 1)`` components -- the primal basis (p
directions of feature space) when p is small, the dual one (the whole centered training space, as an
eigendecomposition of the Gram matrix would give, but without squaring the condition number in float32) when
p >= n_train - 1 -- and :func:`compare_linear_predictivity` projects the targets once per fold and evaluates every
alpha from the decomposition (``align.stats.ridge_solve``, whose docstring gives the LOO and GCV formulas).

GCV (``alpha_selection="gcv"``) costs O(rank) per target column and alpha after the one projection, instead of a
pass over the training rows. On eight random designs (n 60-200, p 10-200, signal and noise varying per column;
``tests/test_ridge.py``) GCV picked the same alpha as exact LOO in 75-93 % (mean 83 %) of (fold, target) cells; the
mean out-of-fold Pearson r differed by < 0.005, except with p close to n_train (p/n_train ≈ 1, where GCV is known to
be unreliable) where GCV scored up to 0.04 lower. LOO stays the default because it is what sklearn does.

Shapes of a prepared layer (``F`` folds, ``r = min(p, n_train_max − 1)``; folds of unequal size are padded, and the
``*_valid`` masks mark real rows): ``U [F, n_train_max, r]`` (the training rows only), ``s2 [F, r]``,
``T [F, n_test_max, r]`` (each fold's held-out rows projected on its basis), ``lev0 [F, n_train_max]``, ``null [F]``,
the row indices ``train``/``test`` with their masks, ``data [n, p]`` and its per-fold means and stds
``mu, sd [F, p]`` (used when the layer is the target). Every product runs over a fold's training rows (the LOO
residuals) or its held-out rows (the predictions), never all n. The shapes depend on p only through r and
``data``; the engine zero-pads widths, which does not change the result (zero columns of X add nothing; zero
columns of Y are constant and dropped).
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from align.metrics._alphas import ALPHA_EDGE_WARN
from align.metrics._alphas import DEFAULT_ALPHAS
from align.metrics._alphas import AlphaGridWarning
from align.metrics._alphas import alpha_edge_message
from align.metrics._alphas import alpha_summary
from align.metrics._alphas import check_alphas
from align.metrics._registry import Metric
from align.metrics._registry import register_metric
from align.metrics._validate import check_pair
from align.stats import RidgeBasis
from align.stats import center_stats
from align.stats import column_pearson
from align.stats import fold_layout
from align.stats import kfold_ids
from align.stats import mean_valid
from align.stats import ridge_basis
from align.stats import ridge_project
from align.stats import ridge_solve

HIGHEST = lax.Precision.HIGHEST


SCORES = ("pearson", "r2")
ALPHA_SELECTIONS = ("loo", "gcv")
CV_SCORES = ("fold_mean", "pooled")


def _mm(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


# ----------------------------------------------------------------------------------------------------------------
# fold geometry


def _rank(p: int, n_train_max: int) -> int:
    """Width r of the per-fold basis: the largest possible rank of a centered training fold."""
    return min(p, n_train_max - 1)


# ----------------------------------------------------------------------------------------------------------------
# prepare / compare (pure JAX; the engine batches these)


def _prepare_folds(X, rows, *, rank: int, scale: bool, pca_components: int = 0):
    """Per-fold decompositions of the centered training X; see the module docstring for the output.

    ``pca_components = k > 0`` keeps the k leading singular directions of each training fold only: ridge on the
    training fold's top-k principal components (PCA fitted on the training rows, never on held-out ones), with the
    held-out rows projected onto them.
    """
    X = jnp.asarray(X, jnp.float32)
    n, p = X.shape
    eps = jnp.finfo(jnp.float32).eps

    def one_fold(args):
        tr, tr_valid, te = args
        basis = ridge_basis(X[tr], tr_valid, rank=rank, scale=scale, pca_components=pca_components,
                            tol=max(n, p) * eps)
        T = ridge_project(basis, X[te])  # held-out rows on this fold's basis, [n_test_max, r]
        return basis.U, basis.s2, T, basis.lev0, basis.null, basis.mu, basis.sd

    # Folds one after the other: XLA's CPU SVD is ~2x slower batched (vmap) than mapped.
    U, s2, T, lev0, null, mu, sd = lax.map(one_fold, (rows["train"], rows["train_valid"], rows["test"]))
    return {"U": U, "s2": s2, "T": T, "lev0": lev0, "null": null, "data": X, "mu": mu, "sd": sd, **rows}


def _target_stats(Y, rows, scale: bool):
    """Per-fold training means and stds ``[F, q]`` of a target layer."""
    return lax.map(lambda a: center_stats(Y[a[0]], a[1], scale), (rows["train"], rows["train_valid"]))


def prepare_linear_predictivity(X, folds=5, seed: int = 0, scale: bool = False, pca_components: int = 0,
                                fold_rows=None):
    """Per-layer work of linear predictivity: one decomposition per training fold of the centered X.

    Args:
      X: ``[n, p]`` float32 activations (may be traced; n and p are static).
      folds: fold count (sklearn KFold with shuffling) or a sequence of n fold ids; static.
      seed: KFold shuffling seed; static.
      scale: divide by training-fold standard deviations; static.
      pca_components: 0 (off) or k: regress on the top-k principal components of each training fold; static.
      fold_rows: None, or a fold layout replacing ``folds``/``seed`` (the row indices and masks of
        ``align.stats.stacked_fold_rows`` for one resample, traced): the engine's bootstrap passes each resample's
        folds grouped by original stimulus.

    Returns:
      A dict of arrays (see the module docstring); every shape depends only on n, the fold structure and p.
    """
    n, p = X.shape
    rows, n_train_max = fold_layout(n, folds, seed, fold_rows)
    return _prepare_folds(X, rows, rank=_rank(p, n_train_max), scale=bool(scale), pca_components=int(pca_components))


def prepare_linear_predictivity_target(Y, folds=5, seed: int = 0, scale: bool = False, pca_components: int = 0,
                                       fold_rows=None):
    """What :func:`compare_linear_predictivity` reads from its target: the data and per-fold means and stds.

    Same arguments as :func:`prepare_linear_predictivity`; no decompositions (used where a layer is only a target,
    e.g. in permutation nulls). ``pca_components`` reduces predictors only: a target keeps its features.
    """
    rows, _ = fold_layout(Y.shape[0], folds, seed, fold_rows)
    Y = jnp.asarray(Y, jnp.float32)
    mu, sd = _target_stats(Y, rows, bool(scale))
    return {"data": Y, "mu": mu, "sd": sd}


def _fold_predict(Y, tr, tr_valid, te, mu, sd, U, s2, T, lev0, null, alphas, *, alpha_per_target: bool,
                  alpha_selection: str):
    """Predictions ``[n_test_max, q]`` of one fold's held-out rows and the chosen alphas ``[q]``."""
    Yc = (Y[tr] - mu) / sd * tr_valid[:, None]  # [n_train_max, q]
    coef, chosen = ridge_solve(RidgeBasis(U=U, s2=s2, lev0=lev0, null=null), Yc, tr_valid, alphas,
                               alpha_per_target=alpha_per_target, selection=alpha_selection)
    return _mm(T, coef) * sd + mu, chosen


def _out_of_fold(prep_x, prep_y, alphas, *, alpha_per_target: bool, alpha_selection: str):
    """Held-out predictions of prep_y's data from prep_x, per fold: ``[F, n_test_max, q]`` (padded rows are
    garbage; mask them with ``prep_x["test_valid"]``), and the chosen alphas ``[F, q]``."""
    Y = prep_y["data"]
    alphas = jnp.asarray(alphas, jnp.float32)

    def one_fold(args):
        return _fold_predict(Y, *args, alphas, alpha_per_target=alpha_per_target, alpha_selection=alpha_selection)

    # Folds one after the other: the working set is one fold's [n_train, q] residuals (the engine maps over layers).
    return lax.map(one_fold, (prep_x["train"], prep_x["train_valid"], prep_x["test"], prep_y["mu"], prep_y["sd"],
                              prep_x["U"], prep_x["s2"], prep_x["T"], prep_x["lev0"], prep_x["null"]))


def _scatter(preds, te, te_valid, n: int):
    """Per-fold held-out predictions ``[F, n_test_max, q]`` back into stimulus order ``[n, q]``."""
    q = preds.shape[-1]
    return jnp.zeros((n, q), preds.dtype).at[te.reshape(-1)].add((preds * te_valid[:, :, None]).reshape(-1, q))


def _column_scores(Y, pred, w, score: str):
    """Per-column Pearson r or R² ``[q]`` over the rows with weight ``w [m]`` (0 or 1), and the mask ``[q]`` of the
    columns that vary over those rows (the others are NaN)."""
    wc = w[:, None]
    valid = jnp.max(jnp.where(wc > 0, Y, -jnp.inf), axis=0) > jnp.min(jnp.where(wc > 0, Y, jnp.inf), axis=0)
    if score == "pearson":
        cols = column_pearson(Y, pred, w)
    else:
        Yc = (Y - _mm(w, Y) / jnp.maximum(jnp.sum(w), 1.0)) * wc
        resid = (Y - pred) * wc
        cols = 1.0 - jnp.sum(resid * resid, axis=0) / jnp.where(valid, jnp.sum(Yc * Yc, axis=0), 1.0)
    return jnp.where(valid, cols, jnp.nan), valid


def _scores(Y, preds, te, te_valid, score: str, cv_score: str):
    """(score, per-column scores ``[q]``, per-fold scores ``[F]``, constant-column mask ``[q]``) of held-out
    predictions ``[F, n_test_max, q]``.

    ``cv_score="fold_mean"``: per held-out fold, the column scores over that fold's rows (columns constant within
    the fold dropped), averaged over columns; then the mean over folds. ``"pooled"``: one column score over the
    predictions of all folds concatenated (each row predicted once); per-fold scores are then NaN.
    """
    constant = ~(jnp.max(Y, axis=0) > jnp.min(Y, axis=0))
    if cv_score == "pooled":
        cols, valid = _column_scores(Y, _scatter(preds, te, te_valid, Y.shape[0]), jnp.ones(Y.shape[0], Y.dtype),
                                     score)
        return mean_valid(cols, valid), cols, jnp.full(te.shape[0], jnp.nan, Y.dtype), constant
    fold_cols, fold_valid = jax.vmap(lambda P, t, w: _column_scores(Y[t], P, w, score))(preds, te, te_valid)
    per_fold = mean_valid(fold_cols, fold_valid)  # [F]
    folds_ok = ~jnp.isnan(per_fold)
    return (mean_valid(per_fold, folds_ok), mean_valid(fold_cols, fold_valid, axis=0), per_fold, constant)


def compare_linear_predictivity(prep_x, prep_y, alphas=DEFAULT_ALPHAS, alpha_per_target: bool = True,
                                score: str = "pearson", alpha_selection: str = "loo", cv_score: str = "fold_mean"):
    """Score of predicting the layer behind ``prep_y`` from the layer behind ``prep_x`` (direction X → Y).

    Args:
      prep_x: :func:`prepare_linear_predictivity` of X (its decompositions are used).
      prep_y: :func:`prepare_linear_predictivity` of Y (only its data and per-fold means/stds are used).
      alphas: ``[A]`` ridge penalties (traced: sweeping them does not recompile).
      alpha_per_target: choose alpha per target column (else one per fold, by the mean error over columns).
      score: ``"pearson"`` or ``"r2"`` (static).
      alpha_selection: ``"loo"`` (exact, as sklearn) or ``"gcv"`` (static).
      cv_score: ``"fold_mean"`` (score per held-out fold, then the mean over folds) or ``"pooled"`` (one score over
        the concatenated out-of-fold predictions); static.

    Returns:
      ``{"score", "alpha_median", "alpha_low_share", "alpha_high_share"}`` float32 scalars: the mean score over
      non-constant target columns (NaN when every column is constant), the median chosen alpha, and the shares of
      (fold, target column) choices at the smallest and at the largest alpha of the grid.
    """
    preds, chosen = _out_of_fold(prep_x, prep_y, alphas, alpha_per_target=alpha_per_target,
                                 alpha_selection=alpha_selection)
    value, _, _, constant = _scores(prep_y["data"], preds, prep_x["test"], prep_x["test_valid"], score, cv_score)
    median, low, high = alpha_summary(chosen, jnp.asarray(alphas, jnp.float32), ~constant)
    return {"score": value, "alpha_median": median, "alpha_low_share": low, "alpha_high_share": high}


# ----------------------------------------------------------------------------------------------------------------
# public functions of one pair


class RidgeCVResult(NamedTuple):
    """Everything :func:`ridge_cv_predict` computes for one (X, Y) pair.

    Attributes:
      predictions: ``[n, q]`` out-of-fold predictions of Y (each row predicted by the model of its fold).
      alphas: ``[F, q]`` alpha chosen per fold and target column.
      column_scores: ``[q]`` Pearson r (or R²) per target column (the mean over folds with ``cv_score="fold_mean"``);
        NaN for constant columns.
      fold_scores: ``[F]`` score of each held-out fold (mean over its non-constant columns); NaN with ``"pooled"``.
      score: the linear-predictivity score: the mean of ``fold_scores`` (``"fold_mean"``) or the mean column score of
        the concatenated predictions (``"pooled"``).
      n_constant: number of constant target columns dropped from the mean.
      fold_ids: ``[n]`` outer-fold id per stimulus.
      alpha_median: median of ``alphas`` over the non-constant columns.
      alpha_low_share, alpha_high_share: shares of those choices at the smallest and at the largest alpha of the grid.
    """

    predictions: np.ndarray
    alphas: np.ndarray
    column_scores: np.ndarray
    score: float
    n_constant: int
    fold_ids: np.ndarray
    fold_scores: np.ndarray
    alpha_median: float
    alpha_low_share: float
    alpha_high_share: float


@functools.partial(jax.jit, static_argnames=("rank", "scale", "alpha_per_target", "score", "alpha_selection",
                                              "cv_score", "pca_components"))
def _ridge_cv(X, Y, rows, alphas, *, rank, scale, alpha_per_target, score, alpha_selection, cv_score,
              pca_components):
    prep_x = _prepare_folds(X, rows, rank=rank, scale=scale, pca_components=pca_components)
    mu, sd = _target_stats(Y, rows, scale)
    preds, chosen = _out_of_fold(prep_x, {"data": Y, "mu": mu, "sd": sd}, alphas, alpha_per_target=alpha_per_target,
                                 alpha_selection=alpha_selection)
    value, cols, per_fold, constant = _scores(Y, preds, rows["test"], rows["test_valid"], score, cv_score)
    median, low, high = alpha_summary(chosen, alphas, ~constant)
    pred = _scatter(preds, rows["test"], rows["test_valid"], Y.shape[0])
    return pred, chosen, jnp.where(constant, jnp.nan, cols), value, jnp.sum(constant), per_fold, median, low, high


def _validate(n, widths=(), alphas=DEFAULT_ALPHAS, folds=5, seed=0, alpha_per_target=True, scale=False,
              score="pearson", alpha_selection="loo", cv_score="fold_mean", pca_components=0):
    """Check the hyper-parameters of linear_predictivity for ``n`` stimuli (raises ValueError)."""
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or not np.all(a > 0):
        raise ValueError(f"linear_predictivity: alphas must be a non-empty 1-D sequence of positive numbers, got {alphas!r}")
    if score not in SCORES:
        raise ValueError(f"linear_predictivity: score={score!r}; use one of {SCORES}")
    if alpha_selection not in ALPHA_SELECTIONS:
        raise ValueError(f"linear_predictivity: alpha_selection={alpha_selection!r}; use one of {ALPHA_SELECTIONS}")
    if cv_score not in CV_SCORES:
        raise ValueError(f"linear_predictivity: cv_score={cv_score!r}; use one of {CV_SCORES}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"linear_predictivity: seed must be an int (the KFold random_state), got {seed!r}")
    try:
        fold_ids = kfold_ids(n, folds, seed)
    except ValueError as e:
        raise ValueError(f"linear_predictivity: {e}") from None
    if not isinstance(pca_components, (int, np.integer)) or isinstance(pca_components, bool) or pca_components < 0:
        raise ValueError(f"linear_predictivity: pca_components must be 0 (off) or a positive number of principal "
                         f"components, got {pca_components!r}")
    if pca_components:
        n_train_min = n - int(np.bincount(fold_ids).max())
        limit = min([n_train_min - 1, *widths]) if widths else n_train_min - 1
        if pca_components > limit:
            raise ValueError(
                f"linear_predictivity: pca_components={pca_components} exceeds the rank a training fold can have "
                f"(at most {limit}: the smallest training fold has {n_train_min} stimuli and the narrowest layer "
                f"{min(widths) if widths else '?'} features); use at most {limit}")


def ridge_cv_predict(X, Y, alphas=DEFAULT_ALPHAS, folds=5, seed: int = 0, alpha_per_target: bool = True,
                     scale: bool = False, score: str = "pearson", alpha_selection: str = "loo",
                     cv_score: str = "fold_mean", pca_components: int = 0) -> RidgeCVResult:
    """Cross-validated ridge predictions of Y from X, with the per-fold chosen alphas and per-column scores.

    Same arguments as :func:`linear_predictivity`; returns a :class:`RidgeCVResult` (NumPy arrays). Warns
    (:class:`AlphaGridWarning`) when more than a quarter of the alpha choices sit at an end of the grid.
    """
    X, Y = check_pair(X, Y, min_n=5)
    _validate(X.shape[0], (X.shape[1],), alphas, folds, seed, alpha_per_target, scale, score, alpha_selection,
              cv_score, pca_components)
    fold_ids = kfold_ids(X.shape[0], folds, seed)
    rows, n_train_max = fold_layout(X.shape[0], folds, seed)
    with jax.default_matmul_precision("highest"):
        pred, chosen, cols, value, n_const, per_fold, median, low, high = _ridge_cv(
            jnp.asarray(X), jnp.asarray(Y), rows, jnp.asarray(alphas, jnp.float32),
            rank=_rank(X.shape[1], n_train_max), scale=bool(scale), alpha_per_target=bool(alpha_per_target),
            score=score, alpha_selection=alpha_selection, cv_score=cv_score, pca_components=int(pca_components))
    if max(float(low), float(high)) > ALPHA_EDGE_WARN:
        warnings.warn(alpha_edge_message(float(low), float(high), "this layer pair", alphas), AlphaGridWarning,
                      stacklevel=2)
    return RidgeCVResult(np.asarray(pred), np.asarray(chosen), np.asarray(cols), float(value), int(n_const), fold_ids,
                         np.asarray(per_fold), float(median), float(low), float(high))


def heldout_predictions(X, Y, **kwargs) -> tuple[np.ndarray, np.ndarray | None]:
    """What the held-out statistics of linear predictivity resample (``align.stats.heldout_interval``,
    ``heldout_difference``): the out-of-fold predictions ``[n, q]`` (float64) of :func:`ridge_cv_predict` with
    ``kwargs``, and the fold ids its score averages over (None with ``cv_score="pooled"``: one pooled fold)."""
    result = ridge_cv_predict(X, Y, **kwargs)
    pooled = kwargs.get("cv_score", "fold_mean") == "pooled"
    return np.asarray(result.predictions, np.float64), None if pooled else result.fold_ids


def linear_predictivity(X, Y, alphas=DEFAULT_ALPHAS, folds=5, seed: int = 0, alpha_per_target: bool = True,
                        scale: bool = False, score: str = "pearson", alpha_selection: str = "loo",
                        cv_score: str = "fold_mean", pca_components: int = 0):
    """How well X linearly predicts Y: cross-validated ridge regression, scored on held-out stimuli.

    Outer folds are sklearn ``KFold(folds, shuffle=True, random_state=seed)`` (or the given fold ids). On each
    training fold X and Y are centered with training means (an intercept), optionally scaled by training stds, and
    the ridge penalty of each target column is chosen from ``alphas`` by exact leave-one-out error, as sklearn
    ``RidgeCV(alphas, alpha_per_target=True, fit_intercept=True)``; then the held-out stimuli are predicted. The
    score is the Pearson r per column of Y between the held-out predictions and Y within each held-out fold,
    averaged over the non-constant columns and then over the folds (Brain-Score's convention, Schrimpf et al. 2018:
    unbiased under the null, where one r over the concatenated out-of-fold predictions of all folds is biased below
    zero, because each fold's intercept is the other folds' mean). Asymmetric: Y → X is another number.

    Args:
      X: ``[n, p]`` predictor activations (converted to float32).
      Y: ``[n, q]`` target activations, rows paired with X.
      alphas: ridge penalties to choose from; default ``np.logspace(-3, 5, 17)`` (:data:`DEFAULT_ALPHAS`).
      folds: number of outer folds (default 5) or an ``[n]`` array of fold ids.
      seed: KFold shuffling seed.
      alpha_per_target: one alpha per target column (default) or one per fold for all columns.
      scale: also divide X and Y columns by their training-fold standard deviations (predictions are mapped back
        to Y's units; with ``alpha_per_target`` scaling Y changes nothing).
      score: ``"pearson"`` (default; in [-1, 1]) or ``"r2"`` (R² of the held-out predictions; at most 1; per fold
        it is sklearn's ``r2_score`` of that fold, so the default equals ``cross_val_score(..., scoring="r2")``'s
        mean for one target column).
      alpha_selection: ``"loo"`` (exact leave-one-out, default) or ``"gcv"`` (generalised cross-validation, faster
        for many alphas; agrees with LOO on most columns, see the module docstring).
      cv_score: ``"fold_mean"`` (default: per held-out fold, then the mean over folds) or ``"pooled"`` (one score
        over the concatenated out-of-fold predictions, the definition used before v0.2; biased below zero under
        the null).
      pca_components: 0 (default, off) or k: regress on the top-k principal components of X fitted on each training
        fold (never on held-out rows); Y keeps its features.

    Returns:
      Scalar float32 array; higher = Y is better predicted from X.

    Raises:
      MetricInputError: non-finite values, unequal n, fewer than 5 stimuli.
      ValueError: bad hyper-parameters (non-positive alphas, too many folds, unknown score, pca_components above
        the rank of a training fold).
    """
    return jnp.asarray(ridge_cv_predict(X, Y, alphas, folds, seed, alpha_per_target, scale, score, alpha_selection,
                                        cv_score, pca_components).score, jnp.float32)


register_metric(
    Metric(
        name="linear_predictivity",
        grid_chunk=1,  # one pair at a time: 4x faster than a vmapped row on CPU (batched matmuls are slow there)
        prepare=prepare_linear_predictivity,
        prepare_target=prepare_linear_predictivity_target,
        compare=compare_linear_predictivity,
        symmetric=False,
        bounds=(-1.0, 1.0),
        invariances=frozenset({"translation"}),
        not_invariant_to="permute_rows_of_one",
        min_n=5,
        defaults={"alphas": DEFAULT_ALPHAS, "folds": 5, "seed": 0, "alpha_per_target": True, "scale": False,
                  "score": "pearson", "alpha_selection": "loo", "cv_score": "fold_mean", "pca_components": 0},
        static=frozenset({"folds", "seed", "scale", "alpha_per_target", "score", "alpha_selection", "cv_score",
                          "pca_components"}),
        prepare_kwargs=frozenset({"folds", "seed", "scale", "pca_components"}),
        validate=_validate,
        pad_invariant=True,  # zero source columns leave X Xᵀ unchanged; zero target columns are constant, dropped
        check_outputs=check_alphas,
        fold_pca_kwarg="pca_components",
        paired_statistic="heldout_ridge",  # a refit per draw would cost a cross-validated ridge fit each
        reference="ridge with per-target LOO alpha as sklearn RidgeCV (Rifkin & Lippert 2007); GCV: Golub, Heath & "
        "Wahba 1979; score per held-out fold then averaged (Brain-Score, Schrimpf et al. 2018)",
        doc="cross-validated ridge X -> Y, Pearson r per held-out fold and target column, averaged (asymmetric)",
    )
)
