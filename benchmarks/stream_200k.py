"""n larger than memory: stream linear CKA and linear predictivity over two 200,000-stimulus stores.

Writes two stores with ``StoreWriter`` in parts (4 layers of width 256 each, float32: about 820 MB per store), then
scores each metric with ``align.streaming.stream_pairwise`` in a fresh process and prints its wall time, peak RSS
(``VmHWM``, or ``resource.getrusage``), the numpy peak traced by ``tracemalloc``, and the bound the streamed path
is meant to keep: the process's baseline after imports plus a few chunks' worth, far below one store (and far below
what the in-memory engine would plan for, ``align.streaming.in_memory_bytes``).

    nice -n 10 .venv/bin/python benchmarks/stream_200k.py [--folder /tmp/stream_200k] [--n 200000]
        [--metrics linear_cka "linear_predictivity(alpha_selection='gcv')"] [--keep]

Exact-LOO linear predictivity (the metric's default) re-reads the rows for the leverages and costs
``n (F - 1) A p Q`` per source layer, like the in-memory path; on a small CPU machine use GCV, as by default here.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LAYERS, WIDTH, LATENT, PART = 4, 256, 16, 20_000
META = {"model_source": "synthetic", "revision": "r1", "architecture": "toy", "pooling": "mean", "dtype": "float32",
        "stimulus_set": "stream200k", "condition": "original", "config_fingerprint": "stream200k"}


def rss_mb() -> float:
    """Peak resident set size of this process so far, MiB: ``VmHWM`` of ``/proc/self/status`` where Linux has it
    (``getrusage``'s ``ru_maxrss`` survives ``exec`` and would count the parent's peak in the scoring process),
    else ``resource.getrusage``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


def generate(folder: Path, n: int) -> list[Path]:
    """Two stores (vision-like x, language-like y) sharing a latent signal, written part by part."""
    from align.store import StoreWriter

    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"s{k:07d}" for k in range(n)]
    rng = np.random.default_rng(0)
    mix = {side: [rng.normal(size=(LATENT, WIDTH)).astype(np.float32) for _ in range(LAYERS)] for side in "xy"}
    paths = []
    for side, model in (("x", "synthetic/vision"), ("y", "synthetic/language")):
        path = folder / f"{side}.parquet"
        paths.append(path)
        if path.exists():
            continue
        w = StoreWriter(path, stimulus_ids=ids, layer_names=[f"layer.{l}" for l in range(LAYERS)],
                        meta=META | {"model": model, "modality": "vision" if side == "x" else "language"})
        for start in range(0, n, PART):
            part = np.random.default_rng(start)  # the latent of a row is the same in both stores
            z = part.normal(size=(min(PART, n - start), LATENT)).astype(np.float32)
            noise = np.random.default_rng([start, ord(side)])
            layers = [z @ m * (l + 1) + noise.normal(size=(z.shape[0], WIDTH)).astype(np.float32) * (1 + l) + l
                      for l, m in enumerate(mix[side])]
            w.write_part(ids[start:start + PART], layers)
        w.finalize()
    return paths


def score(metric: str, x: Path, y: Path) -> dict:
    """Stream one metric; returns timings and memory (run in a fresh process)."""
    import tracemalloc

    import align.streaming
    from align.store import open_store

    sx, sy = open_store(x, cache=False), open_store(y, cache=False)
    baseline = rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    grid = align.streaming.stream_pairwise(metric, sx, sy, progress=False)
    seconds = time.perf_counter() - t0
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows = align.streaming.default_chunk_rows(sx.widths, sy.widths)  # the chunk size the run used
    chunk_mb = rows * 4 * (sum(sx.widths) + sum(sy.widths)) / 2**20
    return {"metric": metric, "seconds": seconds, "baseline_mb": baseline, "peak_rss_mb": rss_mb(),
            "traced_peak_mb": traced / 2**20, "chunk_rows": rows, "chunk_mb": chunk_mb,
            "layer_mb": sx.n * WIDTH * 4 / 2**20, "store_mb": sx.n * sum(sx.widths) * 4 / 2**20,
            "in_memory_plan_gb": align.streaming.in_memory_bytes(metric, sx.n, sx.widths, sy.widths) / 2**30,
            "scores": {d: np.round(np.asarray(v), 4).tolist() for d, v in grid.scores.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=Path("/tmp/stream_200k"))
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--metrics", nargs="+", default=["linear_cka", "linear_predictivity(alpha_selection='gcv')"])
    ap.add_argument("--keep", action="store_true", help="keep the stores (default: delete them at the end)")
    ap.add_argument("--score-one", nargs=3, metavar=("METRIC", "X", "Y"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.score_one:
        print(json.dumps(score(args.score_one[0], Path(args.score_one[1]), Path(args.score_one[2]))))
        return
    t0 = time.perf_counter()
    x, y = generate(args.folder, args.n)
    size = (x.stat().st_size + y.stat().st_size) / 2**20
    print(f"stores: n={args.n}, {LAYERS} x {LAYERS} layers of width {WIDTH}, {size:.0f} MiB on disk in "
          f"{args.folder} (written in {time.perf_counter() - t0:.0f} s; generator peak RSS {rss_mb():.0f} MiB)")
    for metric in args.metrics:
        out = subprocess.run([sys.executable, __file__, "--score-one", metric, str(x), str(y)], check=True,
                             capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        # the Parquet reader holds about two decoded row groups (64 MB each) per store; the accumulators about
        # six chunks (the float32 rows of both stores, their float64 shifted copies, per-fold or per-layer slices)
        reader_mb = 2 * 2 * 64
        bound = r["baseline_mb"] + reader_mb + 6 * r["chunk_mb"]
        print(f"{metric}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MiB (baseline after imports "
              f"{r['baseline_mb']:.0f} MiB; numpy peak traced {r['traced_peak_mb']:.0f} MiB)")
        print(f"  expected bound: baseline + reader {reader_mb} MiB + 6 chunks of {r['chunk_rows']} rows "
              f"({r['chunk_mb']:.0f} MiB each) = "
              f"{bound:.0f} MiB; one layer is {r['layer_mb']:.0f} MiB, one store {r['store_mb']:.0f} MiB, the "
              f"in-memory engine would plan {r['in_memory_plan_gb']:.1f} GiB; measured: "
              f"{(r['peak_rss_mb'] - r['baseline_mb']) / r['layer_mb']:.1f} layers' worth above the baseline, "
              f"{r['peak_rss_mb'] / bound:.0%} of the bound")
        print(f"  scores: {r['scores']}")
    if not args.keep:
        shutil.rmtree(args.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
