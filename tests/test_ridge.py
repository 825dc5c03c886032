"""linear_predictivity against sklearn RidgeCV fitted per fold on the same folds (float64 oracle)."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold

from align.metrics import AlphaGridWarning
from align.metrics._ridge import DEFAULT_ALPHAS
from align.stats import kfold_ids
from align.metrics._ridge import linear_predictivity
from align.metrics._ridge import ridge_cv_predict
from align.metrics._validate import MetricInputError


def _data(n, p, q, seed=0, rank=None):
    """Targets with per-column signal and noise levels, so the best alpha varies across columns."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.2, 3.0, size=p)
    if rank is not None:
        X = X[:, :rank] @ rng.normal(size=(rank, p))
    W = rng.normal(size=(p, q))
    Y = X @ W * rng.uniform(0.01, 1.0, size=q) + rng.normal(size=(n, q)) * rng.uniform(0.1, 10.0, size=q)
    return X.astype(np.float32) + 5.0, Y.astype(np.float32) - 3.0


def _splits(X, folds):
    return list(folds if not isinstance(folds, int) else KFold(folds, shuffle=True, random_state=0).split(X))


def _fold_mean_r(pred, Y, splits):
    """Brain-Score's score: per held-out fold, the mean over target columns of Pearson r; then the mean over folds."""
    return np.mean([np.mean([np.corrcoef(pred[te, j], Y[te, j])[0, 1] for j in range(Y.shape[1])])
                    for _, te in splits])


def _oracle(X, Y, alphas, folds, alpha_per_target=True, scale=False):
    X = X.astype(np.float64)
    Y = Y.astype(np.float64)
    pred = np.zeros_like(Y)
    chosen = []
    for train, test in _splits(X, folds):
        Xtr, Xte = X[train], X[test]
        if scale:
            mu, sd = Xtr.mean(0), Xtr.std(0)
            sd[sd == 0] = 1.0
            Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
        model = RidgeCV(alphas=alphas, alpha_per_target=alpha_per_target).fit(Xtr, Y[train])
        pred[test] = model.predict(Xte)
        chosen.append(np.broadcast_to(model.alpha_, (Y.shape[1],)))
    return pred, np.array(chosen)


def _compare(res, pred, chosen):
    same = np.isclose(res.alphas, chosen, rtol=1e-6)
    cols = same.all(axis=0)
    rel = np.max(np.abs(res.predictions[:, cols] - pred[:, cols]) / np.abs(pred[:, cols]).max(axis=0))
    return same.mean(), rel


@pytest.mark.parametrize("n,p,q", [(60, 10, 20), (80, 40, 30), (70, 80, 25), (100, 79, 10), (64, 50, 12)])
def test_matches_sklearn_ridgecv_per_fold(n, p, q):
    X, Y = _data(n, p, q, seed=n + p)
    res = ridge_cv_predict(X, Y)
    pred, chosen = _oracle(X, Y, DEFAULT_ALPHAS, 5)
    agree, rel = _compare(res, pred, chosen)
    assert agree >= 0.95
    assert rel < 1e-4
    # the score: Pearson r per held-out fold and target column, averaged over columns, then folds
    np.testing.assert_allclose(res.score, _fold_mean_r(pred, Y, _splits(X, 5)), atol=1e-4)
    # cv_score="pooled": one r per column over the concatenated out-of-fold predictions
    pooled = ridge_cv_predict(X, Y, cv_score="pooled")
    r = [np.corrcoef(pred[:, j], Y[:, j])[0, 1] for j in range(q)]
    np.testing.assert_allclose(pooled.score, np.mean(r), atol=1e-4)
    assert np.all(np.isnan(pooled.fold_scores))


def test_rank_deficient_x_and_explicit_folds():
    X, Y = _data(72, 30, 8, seed=3, rank=6)  # X has rank 6: the null space of X inside the training space matters
    ids = np.arange(72) % 4
    res = ridge_cv_predict(X, Y, folds=ids)
    splits = [(np.flatnonzero(ids != f), np.flatnonzero(ids == f)) for f in range(4)]
    pred, chosen = _oracle(X, Y, DEFAULT_ALPHAS, splits)
    agree, rel = _compare(res, pred, chosen)
    assert agree >= 0.95 and rel < 1e-4


def test_scale_one_alpha_and_r2_match_sklearn():
    X, Y = _data(60, 12, 6, seed=4)
    X[:, 3] *= 100.0
    res = ridge_cv_predict(X, Y, scale=True)
    pred, chosen = _oracle(X, Y, DEFAULT_ALPHAS, 5, scale=True)
    agree, rel = _compare(res, pred, chosen)
    assert agree >= 0.95 and rel < 1e-4

    res = ridge_cv_predict(X, Y, alpha_per_target=False, score="r2")
    pred, chosen = _oracle(X, Y, DEFAULT_ALPHAS, 5, alpha_per_target=False)
    np.testing.assert_allclose(res.alphas, chosen, rtol=1e-6)
    np.testing.assert_allclose(res.predictions, pred, rtol=1e-4, atol=1e-4 * np.abs(pred).max())
    # per fold sklearn's r2_score (uniform average over columns), then the mean over folds
    fold_r2 = [r2_score(Y[te], pred[te]) for _, te in _splits(X, 5)]
    np.testing.assert_allclose(res.fold_scores, fold_r2, atol=1e-4)
    np.testing.assert_allclose(res.score, np.mean(fold_r2), atol=1e-4)
    pooled = ridge_cv_predict(X, Y, alpha_per_target=False, score="r2", cv_score="pooled")
    np.testing.assert_allclose(pooled.score, r2_score(Y, pred), atol=1e-4)


def test_constant_target_columns_are_dropped_and_counted():
    X, Y = _data(50, 8, 5, seed=5)
    Y[:, 1] = 2.0
    res = ridge_cv_predict(X, Y)
    assert res.n_constant == 1 and np.isnan(res.column_scores[1])
    np.testing.assert_allclose(res.score, np.nanmean(res.column_scores), rtol=1e-6)


def test_a_column_constant_within_one_held_out_fold_is_dropped_from_that_fold_only():
    X, Y = _data(50, 8, 3, seed=5)
    ids = kfold_ids(50, 5, 0)
    Y[ids == 2, 0] = 1.5  # column 0 has no variance in fold 2's held-out rows
    res = ridge_cv_predict(X, Y)
    pred, _ = _oracle(X, Y, DEFAULT_ALPHAS, 5)
    assert res.n_constant == 0
    expected = []
    for f in range(5):
        te = ids == f
        cols = [j for j in range(3) if np.ptp(Y[te, j]) > 0]
        expected.append(np.mean([np.corrcoef(pred[te, j], Y[te, j])[0, 1] for j in cols]))
    np.testing.assert_allclose(res.fold_scores, expected, atol=1e-4)
    np.testing.assert_allclose(res.score, np.mean(expected), atol=1e-4)


def test_fold_mean_is_centred_on_zero_under_the_null_and_pooled_is_not():
    """The reason for the default (Brain-Score's convention): with nothing shared, the mean over folds of per-fold r
    is ~0, while one r over the concatenated out-of-fold predictions is biased below zero."""
    rng = np.random.default_rng(11)
    fold_mean, pooled = [], []
    for _ in range(40):
        X, Y = rng.normal(size=(60, 10)), rng.normal(size=(60, 4))
        fold_mean.append(ridge_cv_predict(X, Y).score)
        pooled.append(ridge_cv_predict(X, Y, cv_score="pooled").score)
    se = np.std(fold_mean) / np.sqrt(len(fold_mean))
    assert abs(np.mean(fold_mean)) < 3 * se + 0.01
    assert np.mean(pooled) < -0.05 and np.mean(pooled) < np.mean(fold_mean) - 5 * se


def test_pca_components_is_pca_fitted_on_each_training_fold():
    X, Y = _data(70, 20, 5, seed=12)
    res = ridge_cv_predict(X, Y, pca_components=4)
    pred = np.zeros(Y.shape)
    for tr, te in _splits(X, 5):
        pca = PCA(4).fit(X[tr].astype(np.float64))
        model = RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True).fit(pca.transform(X[tr]), Y[tr])
        pred[te] = model.predict(pca.transform(X[te]))
    np.testing.assert_allclose(res.predictions, pred, rtol=1e-3, atol=1e-3 * np.abs(pred).max())
    np.testing.assert_allclose(res.score, _fold_mean_r(pred, Y, _splits(X, 5)), atol=1e-4)
    with pytest.raises(ValueError, match="pca_components=60 exceeds"):
        ridge_cv_predict(X, Y, pca_components=60)
    with pytest.raises(ValueError, match="pca_components"):
        ridge_cv_predict(X, Y, pca_components=-1)


def test_chosen_alphas_are_summarised_and_an_edge_heavy_grid_warns():
    X, Y = _data(60, 10, 6, seed=13)
    res = ridge_cv_predict(X, Y)
    cells = res.alphas  # no constant columns here
    assert res.alpha_median == pytest.approx(np.median(cells))
    assert res.alpha_low_share == pytest.approx((cells == DEFAULT_ALPHAS[0]).mean())
    assert res.alpha_high_share == pytest.approx((cells == DEFAULT_ALPHAS[-1]).mean())
    with pytest.warns(AlphaGridWarning, match="are the smallest alpha"):
        ridge_cv_predict(X, Y, alphas=[1e5, 1e6])  # penalties far too strong: the weaker one wins for most targets
    noise = np.random.default_rng(14).normal(size=Y.shape).astype(np.float32)
    with pytest.warns(AlphaGridWarning, match="are the largest alpha"):
        ridge_cv_predict(X, noise, alphas=[1e-3, 1e-2])  # nothing to predict: the strongest penalty wins


def test_gcv_mostly_picks_the_loo_alpha():
    """The fast path: on these designs GCV picks the LOO alpha in ~80 % of (fold, column) cells (module docstring)."""
    agree, gap = [], []
    for n, p, q in [(60, 10, 20), (80, 40, 30), (70, 80, 25)]:
        X, Y = _data(n, p, q, seed=p)
        loo = ridge_cv_predict(X, Y)
        gcv = ridge_cv_predict(X, Y, alpha_selection="gcv")
        agree.append(np.isclose(loo.alphas, gcv.alphas).mean())
        gap.append(abs(loo.score - gcv.score))
    assert np.mean(agree) > 0.7
    assert max(gap) < 0.02


def test_gcv_matches_the_hat_matrix_formula():
    """GCV(alpha) = n_train ||(I - H) y||² / tr(I - H)², H the hat matrix of ridge with an intercept (float64)."""
    X, Y = _data(50, 12, 6, seed=8)
    res = ridge_cv_predict(X, Y, alpha_selection="gcv")
    ids = kfold_ids(50, 5, 0)
    for f in range(5):
        Xt = X[ids != f].astype(np.float64)
        Yt = Y[ids != f].astype(np.float64)
        n_t = len(Xt)
        Xc = Xt - Xt.mean(0)
        scores = []
        for alpha in DEFAULT_ALPHAS:
            H = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(12), Xc.T) + 1.0 / n_t
            resid = Yt - H @ Yt
            scores.append(n_t * np.sum(resid**2, axis=0) / np.trace(np.eye(n_t) - H) ** 2)
        np.testing.assert_allclose(res.alphas[f], DEFAULT_ALPHAS[np.argmin(scores, axis=0)], rtol=1e-6)


def test_kfold_ids_match_sklearn():
    for n, k in [(10, 5), (23, 4), (100, 5)]:
        ids = kfold_ids(n, k, seed=7)
        for f, (_, test) in enumerate(KFold(k, shuffle=True, random_state=7).split(np.zeros(n))):
            assert set(np.flatnonzero(ids == f)) == set(test)


def test_identity_and_errors():
    X, _ = _data(40, 6, 1, seed=6)
    assert float(linear_predictivity(X, X)) > 0.99
    with pytest.raises(MetricInputError):
        linear_predictivity(X, X[:-1])
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(MetricInputError):
        linear_predictivity(bad, X)
    with pytest.raises(ValueError, match="folds"):
        linear_predictivity(X, X, folds=41)
    with pytest.raises(ValueError, match="alphas"):
        linear_predictivity(X, X, alphas=[0.0, 1.0])
    with pytest.raises(ValueError, match="score"):
        linear_predictivity(X, X, score="spearman")
