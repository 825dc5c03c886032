"""n larger than memory: the streamed grids (align.streaming) equal the in-memory engine's on the same stores, the
memory/stream choice, the layerwise scoring step's automatic switch, and refusals of bad input."""

import numpy as np
import pandas as pd
import pytest

import align
import align.metrics
import align.stats
import align.streaming
from align.experiments import score_pair
from align.metrics import MetricInputError
from align.store import StoreMismatchError
from align.store import StoreWriter
from align.store import open_store

META = {"model": "org/tiny", "model_source": "test", "revision": "r1", "architecture": "toy", "modality": "vision",
        "pooling": "cls", "dtype": "float32", "stimulus_set": "toy", "condition": "original",
        "config_fingerprint": "fp1"}
TOL = 1e-5


def write_store(path, ids, layers, *, part=23, groups=None, **meta):
    """A finished store written in parts of ``part`` rows (layers are [n, d] arrays)."""
    w = StoreWriter(path, stimulus_ids=ids, layer_names=[f"layer.{l}" for l in range(len(layers))],
                    meta=META | meta, groups=groups)
    for s in range(0, len(ids), part):
        w.write_part(ids[s:s + part], [a[s:s + part] for a in layers])
    return open_store(w.finalize())


def planted(n, widths_x, widths_y, seed=0, k=4):
    """Layers sharing a k-dim latent signal (with offsets, so centring matters), float32."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, k))
    xs = [(Z @ rng.normal(size=(k, d)) + rng.normal(size=(n, d)) + 3.0).astype(np.float32) for d in widths_x]
    ys = [(Z @ rng.normal(size=(k, d)) + 2.0 * rng.normal(size=(n, d)) - 5.0).astype(np.float32) for d in widths_y]
    return xs, ys


def stores(tmp_path, n, widths_x, widths_y, seed=0):
    ids = [f"s{k:04d}" for k in range(n)]
    xs, ys = planted(n, widths_x, widths_y, seed)
    return write_store(tmp_path / "x.parquet", ids, xs), write_store(tmp_path / "y.parquet", ids, ys)


def assert_same_grid(memory, streamed, stats=()):
    assert set(memory.scores) == set(streamed.scores)
    assert (memory.layers_x, memory.layers_y, memory.n) == (streamed.layers_x, streamed.layers_y, streamed.n)
    for d in memory.scores:
        a, b = np.asarray(memory.scores[d], np.float64), np.asarray(streamed.scores[d], np.float64)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(b, a, atol=TOL, rtol=0, err_msg=d)
        for name in stats:
            np.testing.assert_allclose(streamed.stats[d][name], memory.stats[d][name], rtol=1e-4, err_msg=name)


SHAPES = {"n>d": (64, [5, 9], [7, 3]), "n<d": (30, [45, 12], [38])}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_matches_pairwise(tmp_path, shape, debiased):
    n, wx, wy = SHAPES[shape]
    sx, sy = stores(tmp_path, n, wx, wy)
    kw = {"debiased": debiased}
    streamed = align.streaming.stream_pairwise("linear_cka", sx, sy, metric_kwargs=kw, chunk_rows=17)
    assert_same_grid(align.pairwise("linear_cka", sx, sy, metric_kwargs=kw), streamed)
    # one chunk holding every row gives the same numbers as many small ones
    whole = align.streaming.stream_pairwise("linear_cka", sx.path, sy.path, metric_kwargs=kw, chunk_rows=10_000)
    np.testing.assert_allclose(whole.score(), streamed.score(), atol=1e-9)


def test_debiased_cka_matches_an_independent_formula(tmp_path):
    """Song et al. (2012) unbiased HSIC on n x n Grams in float64 (numpy), not via the engine."""
    sx, sy = stores(tmp_path, 40, [6], [4], seed=3)
    X, Y = (np.asarray(s.layer(0), np.float64) for s in (sx, sy))

    def hsic_u(K, L):
        n = K.shape[0]
        K, L = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
        one = np.ones(n)
        return (np.trace(K @ L) + one @ K @ one * (one @ L @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ K @ L @ one)

    K, L = X @ X.T, Y @ Y.T
    expected = hsic_u(K, L) / np.sqrt(hsic_u(K, K) * hsic_u(L, L))
    got = align.streaming.stream_pairwise("linear_cka(debiased=True)", sx, sy, chunk_rows=9).score()[0, 0]
    assert got == pytest.approx(expected, abs=1e-9)


PREDICTIVITY = [
    ("n>d", {}),
    ("n<d", {}),
    ("n>d", {"alpha_selection": "gcv", "cv_score": "pooled"}),
    ("n>d", {"alpha_per_target": False, "score": "r2", "folds": 3, "seed": 2, "scale": True}),
    ("n<d", {"alpha_selection": "gcv", "pca_components": 3}),
]


@pytest.mark.parametrize("shape,kw", PREDICTIVITY, ids=[f"{s}-{'-'.join(k) or 'default'}" for s, k in PREDICTIVITY])
def test_linear_predictivity_matches_pairwise_both_directions(tmp_path, shape, kw):
    n, wx, wy = SHAPES[shape]
    sx, sy = stores(tmp_path, n, wx, wy, seed=1)
    streamed = align.streaming.stream_pairwise("linear_predictivity", sx, sy, metric_kwargs=kw, chunk_rows=13)
    memory = align.pairwise("linear_predictivity", sx, sy, metric_kwargs=kw)
    assert set(streamed.scores) == {"x_to_y", "y_to_x"}
    assert_same_grid(memory, streamed, stats=("alpha_median", "alpha_low_share", "alpha_high_share"))
    assert np.all(streamed.score("x_to_y") > 0.1)  # the planted signal is found, not just matched


def test_predictivity_explicit_folds_alphas_one_direction(tmp_path):
    sx, sy = stores(tmp_path, 48, [6], [5, 4], seed=2)
    kw = {"folds": np.arange(48) % 4, "alphas": (0.5, 20.0, 800.0)}
    streamed = align.streaming.stream_pairwise("linear_predictivity", sx, sy, metric_kwargs=kw, chunk_rows=20,
                                               direction="y_to_x")
    assert set(streamed.scores) == {"y_to_x"}
    assert_same_grid(align.pairwise("linear_predictivity", sx, sy, metric_kwargs=kw, direction="y_to_x"), streamed)


def gcv_oracle(X, Y, fold_ids, alphas):
    """float64 numpy linear predictivity (GCV alphas per column, scale=True, pooled Pearson r), from its definition:
    per training fold, z-score X and Y with training statistics, thin SVD of X (components above max(n, p) eps32
    times the largest), GCV error per alpha and column, ridge predictions of the held-out rows in Y's units."""
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    n, pred = X.shape[0], np.zeros_like(Y)
    for f in np.unique(fold_ids):
        tr, te = fold_ids != f, fold_ids == f
        mx, sx, my, sy = X[tr].mean(0), X[tr].std(0), Y[tr].mean(0), Y[tr].std(0)
        U, s, Vt = np.linalg.svd((X[tr] - mx) / sx, full_matrices=False)
        keep = s > s[0] * max(n, X.shape[1]) * np.finfo(np.float32).eps
        U, s, Vt = U[:, keep], s[keep], Vt[keep]
        Yc, nt = (Y[tr] - my) / sy, tr.sum()
        z = U.T @ Yc
        outside = 0.0 if keep.sum() >= nt - 1 else 1.0
        r0 = outside * np.maximum((Yc ** 2).sum(0) - (z ** 2).sum(0), 0)
        errors = []
        for a in alphas:
            g = a / (s ** 2 + a)
            errors.append((r0 + (g[:, None] ** 2 * z ** 2).sum(0)) / nt / ((nt - 1 - np.sum(1 - g)) / nt) ** 2)
        chosen = np.asarray(alphas)[np.argmin(np.array(errors), axis=0)]
        coef = np.stack([Vt.T @ (s / (s ** 2 + a) * z[:, j]) for j, a in enumerate(chosen)], axis=1)
        pred[te] = ((X[te] - mx) / sx) @ coef * sy + my
    return np.mean([np.corrcoef(pred[:, j], Y[:, j])[0, 1] for j in range(Y.shape[1])])


def test_predictivity_matches_a_float64_oracle_with_fewer_stimuli_than_features(tmp_path):
    """Where the float32 engine loses digits (scaling, n < p), the float64 streamed path keeps them."""
    n, wx, wy = SHAPES["n<d"]
    sx, sy = stores(tmp_path, n, wx, wy, seed=1)
    kw = {"alpha_selection": "gcv", "cv_score": "pooled", "scale": True}
    grid = align.streaming.stream_pairwise("linear_predictivity", sx, sy, metric_kwargs=kw, chunk_rows=11)
    folds = align.stats.kfold_ids(n, 5, 0)
    alphas = align.metrics.get_metric("linear_predictivity").defaults["alphas"]
    for i, X in enumerate(sx.layers()):
        for j, Y in enumerate(sy.layers()):
            assert grid.score("x_to_y")[i, j] == pytest.approx(gcv_oracle(X, Y, folds, alphas), abs=1e-8)
            assert grid.score("y_to_x")[i, j] == pytest.approx(gcv_oracle(Y, X, folds, alphas), abs=1e-8)


@pytest.mark.parametrize("metric", ["linear_cka(debiased=True)", "linear_predictivity(alpha_selection='gcv')"])
def test_constant_layers_skip_and_error(tmp_path, metric):
    ids = [f"s{k:03d}" for k in range(40)]
    xs, ys = planted(40, [6, 4], [5])
    xs.insert(1, np.full((40, 3), 2.5, np.float32))
    sx, sy = write_store(tmp_path / "x.parquet", ids, xs), write_store(tmp_path / "y.parquet", ids, ys)
    streamed = align.streaming.stream_pairwise(metric, sx, sy, chunk_rows=16, constant_layers="skip")
    assert streamed.constant_x == ("layer.1",) and streamed.constant_y == ()
    assert_same_grid(align.pairwise(metric, sx, sy, constant_layers="skip"), streamed)
    with pytest.raises(MetricInputError, match="layer.1.*constant"):
        align.streaming.stream_pairwise(metric, sx, sy, chunk_rows=16)


@pytest.mark.parametrize("reduce", ["one", "mean"])
def test_rows_y_pairs_captions_with_their_image(tmp_path, reduce):
    """Each x row with one of its y rows, or the mean of its rows (a caption store with 3 captions per image)."""
    n = 37
    images = [f"img{k:03d}" for k in range(n)]
    xs, ys = planted(3 * n, [6, 5], [4, 7], seed=4)
    xs = [x[:n] for x in xs]
    captions = [f"{i}#{c}" for i in images for c in range(3)]
    sx = write_store(tmp_path / "x.parquet", images, xs)
    sy = write_store(tmp_path / "y.parquet", captions, ys, groups=[i for i in images for _ in range(3)])
    rows_y = [np.array([3 * k + 1]) if reduce == "one" else np.arange(3 * k, 3 * k + 3) for k in range(n)]
    reduced = [np.stack([y[r].astype(np.float64).mean(axis=0) for r in rows_y]).astype(np.float32) for y in ys]
    streamed = align.streaming.stream_pairwise("linear_cka", sx, sy, rows_y=rows_y, chunk_rows=8)
    memory = align.pairwise("linear_cka", dict(zip(sx.layer_names, xs)), dict(zip(sy.layer_names, reduced)))
    assert_same_grid(memory, streamed)


def test_bad_input_is_refused_before_reading(tmp_path):
    sx, sy = stores(tmp_path, 20, [3], [4])
    with pytest.raises(ValueError, match=r"rsa.*no streamed.*linear_cka.*linear_predictivity"):
        align.streaming.stream_pairwise("rsa", sx, sy)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="chunk_rows must be a positive"):
            align.streaming.stream_pairwise("linear_cka", sx, sy, chunk_rows=bad)
    other = write_store(tmp_path / "z.parquet", [f"t{k:04d}" for k in range(20)], planted(20, [4], [])[0])
    with pytest.raises(StoreMismatchError, match="same stimuli in the same order"):
        align.streaming.stream_pairwise("linear_cka", sx, other)
    with pytest.raises(ValueError, match="rows_y lists the store_y rows of 3 stimuli, but store_x has 20"):
        align.streaming.stream_pairwise("linear_cka", sx, other, rows_y=[[0], [1], [2]])
    with pytest.raises(ValueError, match="outside the 20 rows"):
        align.streaming.stream_pairwise("linear_cka", sx, other, rows_y=[[k + 1] for k in range(20)])
    with pytest.raises(ValueError, match="direction must be"):
        align.streaming.stream_pairwise("linear_predictivity", sx, sy, direction="sideways")
    with pytest.raises(TypeError, match="activation stores"):
        align.streaming.stream_pairwise("linear_cka", [np.zeros((20, 3))], sy)


def test_choose_path_by_shape_and_memory(monkeypatch):
    widths = [256] * 4
    gib = 2**30
    assert align.streaming.choose_path("linear_cka", 2_000, widths, widths, 8 * gib) == "memory"
    # an [n, n] Gram per layer: 200k stimuli need far more than 8 GiB
    assert align.streaming.choose_path("linear_cka", 200_000, widths, widths, 8 * gib) == "stream"
    # linear predictivity holds per-fold decompositions [F, n_train, p] instead: about 5.4 GiB here
    assert align.streaming.choose_path("linear_predictivity", 200_000, widths, widths, 16 * gib) == "memory"
    assert align.streaming.choose_path("linear_predictivity", 200_000, widths, widths, 4 * gib) == "stream"
    # the estimate grows with n and falls under the budget for a small grid
    small = align.streaming.in_memory_bytes("linear_cka", 1_000, widths, widths)
    assert small < align.streaming.in_memory_bytes("linear_cka", 2_000, widths, widths)
    assert align.streaming.choose_path("linear_cka", 1_000, widths, widths, int(small / 0.69)) == "memory"
    assert align.streaming.choose_path("linear_cka", 1_000, widths, widths, int(small / 0.71)) == "stream"
    with pytest.raises(ValueError, match=r"rsa on n=200000.*no streamed form.*linear_cka"):
        align.streaming.choose_path("rsa", 200_000, widths, widths, 8 * gib)
    monkeypatch.setenv(align.streaming.MEMORY_ENV, "1e6")
    assert align.streaming.available_memory() == 1_000_000
    assert align.streaming.choose_path("linear_cka", 2_000, widths, widths) == "stream"
    monkeypatch.setenv(align.streaming.MEMORY_ENV, "lots")
    with pytest.raises(ValueError, match="ALIGN_MEMORY_BYTES='lots' is not a positive"):
        align.streaming.available_memory()


@pytest.mark.parametrize("metric,caption", [("linear_cka", "mean"), ("linear_predictivity", "first")])
def test_layerwise_scoring_streams_when_memory_is_short(tmp_path, monkeypatch, metric, caption):
    """score_pair (the layerwise scoring step) streams under a tiny memory budget, with the in-memory table."""
    n = 45
    images = [f"img{k:03d}" for k in range(n)]
    xs, ys = planted(2 * n, [6, 5], [4, 7], seed=5)
    xs = [x[:n] for x in xs]
    xs.insert(0, np.ones((n, 3), np.float32))  # a constant embedding layer: NaN and "constant x layer" either way
    vision = write_store(tmp_path / "v.parquet", images, xs)
    language = write_store(tmp_path / "l.parquet", [f"{i}#{c}" for i in images for c in range(2)], ys,
                           groups=[i for i in images for _ in range(2)], model="org/text", modality="language")
    groups = {i: f"g{k // 3}" for k, i in enumerate(images)}  # copies: three images per fold group
    memory_log, stream_log = [], []
    memory = score_pair(vision, language, metric, caption=caption, groups=groups, log=memory_log.append)
    monkeypatch.setenv(align.streaming.MEMORY_ENV, "10000")
    streamed = score_pair(vision, language, metric, caption=caption, groups=groups, log=stream_log.append)
    assert memory_log == []
    assert len(stream_log) == 1 and "streamed from the stores" in stream_log[0] and "more than" in stream_log[0]
    assert list(streamed.columns) == list(memory.columns) and len(streamed) == len(memory) == 3 * 2 * (
        2 if metric == "linear_predictivity" else 1)
    np.testing.assert_allclose(streamed["score"], memory["score"], atol=TOL)
    assert streamed["undefined"].tolist() == memory["undefined"].tolist()
    rest = [c for c in memory.columns if c != "score" and not c.startswith("alpha_")]
    pd.testing.assert_frame_equal(streamed[rest], memory[rest])
    for c in memory.columns.difference(rest + ["score"]):
        np.testing.assert_allclose(streamed[c], memory[c], rtol=1e-4, err_msg=c)
    # a permutation null has no streamed form: in memory, and the log says why
    if metric == "linear_cka":
        stream_log.clear()
        score_pair(vision, language, metric, caption=caption, null=3, log=stream_log.append)
        assert "in memory" in stream_log[0] and "permutation null" in stream_log[0]
