"""Cost of mlp_predictivity relative to linear_predictivity (ridge) on a layer grid like the COCO figures'.

Both metrics score every (x layer, y layer) pair in both directions through ``align.pairwise``. Each is called twice
on the same layers: the first call includes compilation, the second is the steady-state cost; the ratio uses the
second calls (``--once``: the first calls only, for slow machines).

    .venv/bin/python benchmarks/mlp_vs_ridge.py [--n 300] [--layers 4 4] [--widths 384 576] [--once]
"""

import argparse
import time
import warnings

import jax
import numpy as np

import align


def _layers(rng, z, n, width, count):
    """Layers sharing a 16-d latent ``z``, half through a square (a nonlinear relation ridge cannot see)."""
    out = []
    for i in range(count):
        feats = z if i % 2 == 0 else z ** 2 - 1.0
        out.append((feats @ rng.normal(size=(16, width)) + rng.normal(size=(n, width))).astype(np.float32))
    return out


def _timed(metric, xs, ys, once):
    times, grid = [], None
    for _ in range(1 if once else 2):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the alpha-grid warning on unpredictable pairs
            grid = align.pairwise(metric, xs, ys, progress=False)
        times.append(time.perf_counter() - t0)
    return times, grid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--layers", type=int, nargs=2, default=(4, 4))
    ap.add_argument("--widths", type=int, nargs=2, default=(384, 576))
    ap.add_argument("--once", action="store_true", help="one call per metric (compile + run)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    z = rng.normal(size=(args.n, 16))
    xs = _layers(rng, z, args.n, args.widths[0], args.layers[0])
    ys = _layers(rng, z, args.n, args.widths[1], args.layers[1])
    pairs = 2 * args.layers[0] * args.layers[1]
    print(f"device {jax.devices()[0]}, n={args.n}, grid {args.layers[0]}x{args.layers[1]} (both directions: "
          f"{pairs} fits), widths {tuple(args.widths)}")
    results = {}
    for metric in ("linear_predictivity", "mlp_predictivity"):
        times, grid = _timed(metric, xs, ys, args.once)
        results[metric] = times[-1]
        shown = "   ".join(f"{name} {t:8.2f} s" for name, t in zip(("first", "second"), times))
        print(f"{metric:22s} {shown}   per fit {times[-1] / pairs:7.3f} s   mean x_to_y "
              f"{np.nanmean(grid.scores['x_to_y']):.3f}", flush=True)
    ratio = results["mlp_predictivity"] / results["linear_predictivity"]
    print(f"mlp / ridge time ({'first' if args.once else 'second'} calls): {ratio:.1f}x")


if __name__ == "__main__":
    main()
