"""GPU check: is this GPU install correct, and how fast is it?

On a machine where JAX sees a GPU this script

1. **accuracy**: scores every metric of the grid-S benchmark (``grid_s.CASES``) with ``align.pairwise`` in float32
   on the GPU and compares each layer pair against a float64 oracle computed on the CPU by an independent peer
   implementation (``peers.py``: sklearn RidgeCV, Kornblith-style CKA, rsatoolbox, scipy, numpy SVCCA, the
   platonic-rep kNN loops), on a small grid (n = 1000, 3 x 256 vs 3 x 512); a metric passes when the largest
   difference is within its float32 tolerance;
2. **speed**: times grid-L, n = 5000 stimuli, 24 layers x 1024 (vision) against 32 layers x 4096 (language), 768
   layer pairs, every metric, both directions of the asymmetric ones (first call, compilation included);

and prints one table. Without a GPU it says so and exits 0 (nothing to check); ``--allow-cpu`` runs it on the CPU
anyway (with ``--quick`` this is how the script itself is tested). Exit status 1 when any metric fails accuracy.

Run from the repository root::

    .venv/bin/python benchmarks/gpu_check.py                 # on a GPU machine (about 5-8 min on one H100)
    .venv/bin/python benchmarks/gpu_check.py --quick --allow-cpu   # a small smoke run anywhere
    .venv/bin/python benchmarks/gpu_check.py --metrics linear_cka,rsa --skip-timing
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grid_s as G  # noqa: E402  (benchmarks/grid_s.py: the cases and the planted data)

GRID_ACCURACY = G.Grid(n=1000, vision=(3, 256), language=(3, 512))
GRID_L = G.Grid(n=5000, vision=(24, 1024), language=(32, 4096))
QUICK_ACCURACY = G.Grid(n=200, vision=(2, 32), language=(2, 48))
QUICK_L = G.Grid(n=300, vision=(3, 64), language=(4, 128))

# float32 on the device against float64 on the CPU: rank-based and kNN metrics are exact up to ties; the
# regression and SVD-based ones accumulate float32 error over n and the width
TOLERANCE = {"linear_predictivity": 2e-3, "linear_predictivity_gcv": 5e-2, "procrustes": 1e-3, "svcca": 1e-3}
DEFAULT_TOLERANCE = 1e-4

# the sklearn oracle scores the pooled out-of-fold predictions of all folds; align's default (cv_score="fold_mean")
# averages per-fold scores instead, so the accuracy check runs align with the oracle's definition
ORACLE_KWARGS = {"linear_predictivity": {"cv_score": "pooled"}}


def gpu_devices() -> list:
    """The GPUs JAX sees (empty on a CPU-only jax build or a machine without a GPU)."""
    import jax

    try:
        return list(jax.devices("gpu"))
    except RuntimeError:
        return []


def _directions(case: G.Case) -> tuple[str, ...]:
    import align

    return ("symmetric",) if align.get_metric(case.metric).symmetric else ("x_to_y", "y_to_x")


def _score(grid, direction: str) -> np.ndarray:
    return np.asarray(grid.score(direction if direction != "symmetric" else None), np.float64)


def accuracy(case: G.Case, grid: G.Grid) -> dict:
    """Max |float32 device − float64 CPU oracle| over every layer pair and direction of ``grid``."""
    import align

    Xs, Ys = G.make_layers(grid)
    out = align.pairwise(case.metric, Xs, Ys, metric_kwargs={**case.kwargs, **ORACLE_KWARGS.get(case.key, {})},
                         progress=False)
    oracles = [p for p in case.peers() if p.oracle]
    if not oracles:
        return {"oracle": "none", "max_diff": float("nan"), "ok": True}
    peer = oracles[0]
    X64, Y64 = [x.astype(np.float64) for x in Xs], [y.astype(np.float64) for y in Ys]
    worst = 0.0
    for d in _directions(case):
        ours = _score(out, d)
        if peer.mode == "grid":
            theirs = np.asarray(peer.fn(X64, Y64), np.float64)
        else:
            theirs = np.array([[peer.fn(Y64[j], X64[i]) if d == "y_to_x" else peer.fn(X64[i], Y64[j])
                                for j in range(len(Ys))] for i in range(len(Xs))])
        worst = max(worst, float(np.nanmax(np.abs(ours - theirs))))
    tol = TOLERANCE.get(case.key, DEFAULT_TOLERANCE)
    return {"oracle": peer.name, "max_diff": worst, "ok": worst <= tol, "tolerance": tol}


def timing(case: G.Case, grid: G.Grid, layers) -> dict:
    """Seconds for one whole grid (every direction), compilation included."""
    import jax

    import align

    Xs, Ys = layers
    t = time.perf_counter()
    out = align.pairwise(case.metric, Xs, Ys, metric_kwargs=case.kwargs, progress=False)
    for d in out.directions:
        jax.block_until_ready(out.score(d if d != "symmetric" else None))
    return {"seconds": time.perf_counter() - t, "pairs": grid.pairs * len(out.directions)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--allow-cpu", action="store_true", help="run on the CPU when no GPU is visible")
    ap.add_argument("--quick", action="store_true", help="small grids (a smoke run, not a measurement)")
    ap.add_argument("--metrics", help="comma-separated case keys (default: all of grid_s.CASES)")
    ap.add_argument("--skip-timing", action="store_true", help="accuracy only")
    args = ap.parse_args(argv)

    import jax

    gpus = gpu_devices()
    if not gpus and not args.allow_cpu:
        print(f"gpu_check: no GPU visible to JAX (backend {jax.default_backend()!r}, devices {jax.devices()}); "
              "nothing to check. On a CUDA machine install the GPU build (see README, 'Running at scale').")
        return 0
    keys = args.metrics.split(",") if args.metrics else list(G.CASES)
    unknown = [k for k in keys if k not in G.CASES]
    if unknown:
        ap.error(f"unknown metric case(s) {unknown}; choose from {sorted(G.CASES)}")
    acc_grid, big = (QUICK_ACCURACY, QUICK_L) if args.quick else (GRID_ACCURACY, GRID_L)
    print(f"# device: {gpus[0] if gpus else jax.devices()[0]} ({len(gpus)} GPU(s) visible)")
    print(f"# accuracy grid: {acc_grid.describe()}, float32 on the device vs float64 oracle on the CPU")
    if not args.skip_timing:
        print(f"# timing grid: {big.describe()}, first call (compilation included), every direction")
        layers = G.make_layers(big)
    rows, failed = [], []
    for key in keys:
        case = G.CASES[key]
        acc = accuracy(case, acc_grid)
        tim = {"seconds": float("nan"), "pairs": 0} if args.skip_timing else timing(case, big, layers)
        rows.append((key, acc, tim))
        if not acc["ok"]:
            failed.append(key)
        print(f"#   {key}: max diff {acc['max_diff']:.2e} ({acc['oracle']}), {tim['seconds']:.1f} s", flush=True)
    print()
    print("| metric | float64 oracle | max abs diff | tolerance | ok | grid time s | pair-directions |")
    print("|---|---|---|---|---|---|---|")
    for key, acc, tim in rows:
        print(f"| {key} | {acc['oracle']} | {acc['max_diff']:.2e} | {acc.get('tolerance', float('nan')):.0e} | "
              f"{'yes' if acc['ok'] else 'NO'} | {tim['seconds']:.1f} | {tim['pairs']} |")
    if failed:
        print(f"\ngpu_check: accuracy FAILED for {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
