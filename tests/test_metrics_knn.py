# Oracle: slow Python loops in float64 following Huh et al. 2024 (platonic-rep metrics.py): neighbours by cosine
# similarity, self excluded, ties to the lower index (sort by (-similarity, index)); CKNNA with the Song et al.
# unbiased HSIC of the mutual-neighbour-masked kernels, term by term.
# Largest |float32 - float64 oracle| observed (n = 30-40, k from 1 to n-1, 5 seeds, with and without duplicated
# rows): mutual_knn 3.8e-8, cycle_knn 3.6e-8 (float32 rounding of the fraction; neighbour sets identical),
# cknna 4.5e-7. The O(n k log k) CKNNA (neighbour indices and kernel values, no [n, n] masks) against the former
# dense float32 implementation: max |difference| 6.6e-7 over 540 cases (n 5-1000, k 2 to n-1, 8 seeds, duplicated
# rows, rounded data, a zero row); against float64 with the same neighbour sets (n 40-600, k 5 to n-1): 3.3e-7,
# as the dense one (3.3e-7).
"""Mutual k-NN, cycle k-NN and CKNNA against slow loops."""

import jax
import numpy as np
import pytest

import align.metrics as M
from align.metrics import _knn


def _pair(n=40, seed=0, duplicates=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 16))
    Y = X @ rng.normal(size=(16, 12)) + 1.5 * rng.normal(size=(n, 12))
    if duplicates:  # exact ties: the last rows repeat the first ones
        X[-duplicates:] = X[:duplicates]
        Y[-duplicates:] = Y[:duplicates]
    return X, Y


def knn_loop(X, k):
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    Xn = X / np.where(norm > 0, norm, 1.0)
    n = len(X)
    out = []
    for i in range(n):
        cands = sorted((-float(Xn[i] @ Xn[j]), j) for j in range(n) if j != i)
        out.append([j for _, j in cands[:k]])
    return out


def mutual_loop(X, Y, k):
    a, b = knn_loop(X, k), knn_loop(Y, k)
    return np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(X))])


def cycle_loop(X, Y, k):
    a, b = knn_loop(X, k), knn_loop(Y, k)
    return np.mean([any(i in a[j] for j in b[i]) for i in range(len(X))])


def hsic1_loop(K, L):
    n = len(K)
    tr = sk = sl = kl = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                tr += K[i, j] * L[j, i]
                sk += K[i, j]
                sl += L[i, j]
    for j in range(n):
        kl += sum(K[i, j] for i in range(n) if i != j) * sum(L[j, m] for m in range(n) if m != j)
    return (tr + sk * sl / ((n - 1) * (n - 2)) - 2 * kl / (n - 2)) / (n * (n - 3))


def hsic1_dense(K, L):
    """The unbiased HSIC of hsic1_loop, vectorised (float64)."""
    n = len(K)
    K, L = K * (1 - np.eye(n)), L * (1 - np.eye(n))
    value = np.sum(K * L.T) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2 * K.sum(0) @ L.sum(1) / (n - 2)
    return value / (n * (n - 3))


def cknna_dense(X, Y, k):
    """cknna_loop with dense [n, n] masks and vectorised HSICs: fast enough for many seeds and larger n."""
    n = len(X)

    def kernel(A):
        norm = np.linalg.norm(A, axis=1, keepdims=True)
        A = A / np.where(norm > 0, norm, 1.0)
        return A @ A.T

    mk, ml = np.zeros((n, n)), np.zeros((n, n))
    for i, (a, b) in enumerate(zip(knn_loop(X, k), knn_loop(Y, k))):
        mk[i, a] = 1.0
        ml[i, b] = 1.0
    K, L, m = kernel(X), kernel(Y), mk * ml
    return hsic1_dense(m * K, m * L) / np.sqrt(hsic1_dense(mk * K, mk * K) * hsic1_dense(ml * L, ml * L))


def cknna_loop(X, Y, k):
    n = len(X)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    K, L = Xn @ Xn.T, Yn @ Yn.T
    a, b = knn_loop(X, k), knn_loop(Y, k)
    mk, ml = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        mk[i, a[i]] = 1.0
        ml[i, b[i]] = 1.0
    m = mk * ml
    return hsic1_loop(m * K, m * L) / np.sqrt(hsic1_loop(mk * K, mk * K) * hsic1_loop(ml * L, ml * L))


@pytest.mark.parametrize("k", [1, 5, 10, 39])
@pytest.mark.parametrize("duplicates", [0, 8])
def test_mutual_and_cycle_match_loops(k, duplicates):
    X, Y = _pair(duplicates=duplicates)
    np.testing.assert_array_equal(np.asarray(_knn.knn_indices(X.astype(np.float32), k)), knn_loop(X, k))
    assert abs(float(M.mutual_knn(X, Y, k=k)) - mutual_loop(X, Y, k)) < 1e-6
    assert abs(float(M.cycle_knn(X, Y, k=k)) - cycle_loop(X, Y, k)) < 1e-6
    assert abs(float(M.cycle_knn(Y, X, k=k)) - cycle_loop(Y, X, k)) < 1e-6


@pytest.mark.parametrize("k", [2, 5, 29])
def test_cknna_matches_loop(k):
    X, Y = _pair(n=30, seed=1)
    assert abs(float(M.cknna(X, Y, k=k)) - cknna_loop(X, Y, k)) < 1e-4
    assert abs(float(M.cknna(Y, X, k=k)) - cknna_loop(Y, X, k)) < 1e-4


@pytest.mark.parametrize(("n", "ks"), [(6, [2, 5]), (25, [3, 24]), (80, [10, 79])])
def test_cknna_matches_dense_oracle(n, ks):
    # The sparse compare against dense masks: exact ties (duplicated rows), a zero row, both directions.
    for seed in (0, 1, 3):  # plain; duplicated rows; duplicated rows and a zero row
        X, Y = _pair(n=n, seed=seed, duplicates=n // 4 if seed % 2 else 0)
        if seed == 3:
            X[1] = 0.0
        for k in ks:
            for A, B in ((X, Y), (Y, X)):
                assert abs(float(M.cknna(A, B, k=k)) - cknna_dense(A, B, k)) < 1e-5, (seed, k)


def test_cknna_prep_is_n_by_k():
    X, _ = _pair(n=50, seed=3, duplicates=10)
    prep = jax.jit(_knn.prepare_cknna, static_argnames="k")(X.astype(np.float32), k=7)
    assert {name: a.shape for name, a in prep.items()} == {"idx": (50, 7), "kernel": (50, 7), "rev": (50, 7),
                                                           "self_hsic": ()}
    idx, rev = np.asarray(prep["idx"]), np.asarray(prep["rev"])
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(knn_loop(X, 7), axis=1))
    for i in range(50):
        for s, j in enumerate(idx[i]):
            want = list(idx[j]).index(i) if i in idx[j] else 7
            assert rev[i, s] == want


def test_find_in_rows_matches_a_scan():
    rng = np.random.default_rng(0)
    find = jax.jit(_knn._find_in_rows)
    for k in (1, 2, 7, 8, 33):
        rows = np.sort(np.stack([rng.choice(100, size=k, replace=False) for _ in range(20)]), axis=1)
        which = rng.integers(0, 20, size=(20, 40))
        values = rng.integers(-1, 101, size=(20, 40))
        slot, found = find(rows.astype(np.int32), which.astype(np.int32), values.astype(np.int32))
        for e in np.ndindex(which.shape):
            hits = np.flatnonzero(rows[which[e]] == values[e])
            assert bool(found[e]) == (hits.size == 1)
            if hits.size:
                assert int(slot[e]) == hits[0]


def test_ties_go_to_the_lower_index():
    X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    # row 0: rows 1 and 3 tie (cosine 1), rows 2 and 4 tie (cosine 0)
    np.testing.assert_array_equal(np.asarray(_knn.knn_indices(X.astype(np.float32), 3))[0], [1, 3, 2])


def test_knn_properties():
    X, Y = _pair(n=30, seed=2)
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert float(M.mutual_knn(X, X)) == 1.0
    assert float(M.cycle_knn(X, X)) == 1.0
    assert abs(float(M.cknna(X, X)) - 1.0) < 1e-5
    assert float(M.mutual_knn(Y, X)) == float(M.mutual_knn(X, Y))
    assert float(M.mutual_knn(4.0 * X @ Q, Y)) == float(M.mutual_knn(X, Y))
    perm = rng.permutation(30)
    assert abs(float(M.mutual_knn(X[perm], Y[perm])) - float(M.mutual_knn(X, Y))) < 1e-6
    assert float(M.mutual_knn(X[perm], Y)) < float(M.mutual_knn(X, Y))


def test_k_is_validated():
    X, Y = _pair(n=12)
    for f in (M.mutual_knn, M.cycle_knn, M.cknna):
        with pytest.raises(ValueError, match="k=12"):
            f(X, Y, k=12)
        with pytest.raises(ValueError, match="k must be"):
            f(X, Y, k=0)
    with pytest.raises(ValueError, match="k must be >= 2"):
        M.cknna(X, Y, k=1)
    with pytest.raises(ValueError, match="k=20"):
        M.get_metric("mutual_knn").validate(20, (16, 12), k=20)
    with pytest.raises(ValueError, match="integer"):
        M.mutual_knn(X, Y, k=2.5)
