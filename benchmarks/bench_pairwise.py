"""Wall time of align.pairwise on a moderate layer grid (first call = compile + run, second call = run).

    .venv/bin/python benchmarks/bench_pairwise.py [--n 500] [--layers 12 12] [--widths 384 512]
"""

import argparse
import time

import jax
import numpy as np

import align


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--layers", type=int, nargs=2, default=(12, 12))
    ap.add_argument("--widths", type=int, nargs=2, default=(384, 512))
    ap.add_argument("--metrics", nargs="+", default=["linear_cka", "rbf_cka", "mutual_knn", "rsa",
                                                      "linear_predictivity(alpha_selection='gcv')",
                                                      "linear_predictivity"])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    z = rng.normal(size=(args.n, 16))
    xs = [(z @ rng.normal(size=(16, args.widths[0])) + rng.normal(size=(args.n, args.widths[0]))).astype(np.float32)
          for _ in range(args.layers[0])]
    ys = [(z @ rng.normal(size=(16, args.widths[1])) + rng.normal(size=(args.n, args.widths[1]))).astype(np.float32)
          for _ in range(args.layers[1])]
    print(f"device {jax.devices()[0]}, n={args.n}, grid {args.layers[0]}x{args.layers[1]}, widths {args.widths}")
    for spec in args.metrics:
        t0 = time.perf_counter()
        align.pairwise(spec, xs, ys)
        t1 = time.perf_counter()
        align.pairwise(spec, xs, ys)
        t2 = time.perf_counter()
        print(f"{spec:45s} first {t1 - t0:7.2f} s   second {t2 - t1:7.2f} s")


if __name__ == "__main__":
    main()
