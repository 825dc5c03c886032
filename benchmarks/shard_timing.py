"""Time one medium layer grid with ``devices=1`` and ``devices=N`` (sharded over N local JAX devices).

On a CPU-only machine the N devices are forced host devices (``--xla_force_host_platform_device_count``) sharing
the same cores, so this measures the sharding overhead rather than a speed-up; on a machine with N GPUs it measures
the real scaling. Each setting is run twice; the second (compiled) call is reported.

    .venv/bin/python benchmarks/shard_timing.py --devices 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--metrics", default="linear_cka,rsa,linear_predictivity")
    ap.add_argument("--n-perm", type=int, default=16)
    args = ap.parse_args(argv)
    if "jax" not in sys.modules and "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.devices}").strip()
    import jax
    import numpy as np

    import align

    rng = np.random.default_rng(0)
    z = rng.standard_normal((args.n, 16))
    Xs = [(z @ rng.standard_normal((16, 256)) + rng.standard_normal((args.n, 256))).astype(np.float32)
          for _ in range(6)]
    Ys = [(z @ rng.standard_normal((16, 384)) + rng.standard_normal((args.n, 384))).astype(np.float32)
          for _ in range(7)]
    print(f"# {jax.devices()[0].platform}, {len(jax.devices())} device(s); n={args.n}, 6 x 256 vs 7 x 384 layers, "
          f"n_perm={args.n_perm}; seconds of the second call")
    print("| metric | devices=1 s | devices=%d s |" % args.devices)
    print("|---|---|---|")
    for metric in args.metrics.split(","):
        row = []
        for d in (1, args.devices):
            for _ in range(2):
                t = time.perf_counter()
                align.pairwise(metric, Xs, Ys, n_perm=args.n_perm, devices=d, progress=False)
                took = time.perf_counter() - t
            row.append(took)
        print(f"| {metric} | {row[0]:.2f} | {row[1]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
