"""Grid-S benchmark: ``align.pairwise`` over a whole layer grid against the peer libraries, per metric.

Grid-S is n = 2000 stimuli, 12 "vision" layers of width 768 against 16 "language" layers of width 2048 (192 layer
pairs), random float32 data with a planted shared subspace (fixed seed). For each metric this script

- times ``align.pairwise(metric, Xs, Ys)`` in a fresh subprocess (so the first call includes compilation and the
  peak memory is the call's own): the first call, and a second call when the first was quick;
- times the peers on the same inputs (see ``peers.py``): per-pair peers on a subset of pairs when they are slow,
  scaled by the number of pair-directions (the table says so), grid peers on the whole grid;
- compares the scores on the pairs the peer computed (max |difference|);
- estimates the matmul FLOPs of our computation and divides the achieved rate by this machine's measured float32
  matmul rate (numpy and jax, 4096 x 4096);
- reports the peak memory growth of the ``align.pairwise`` call relative to the activations' size.

Run it from the repository root (it is not a test)::

    .venv/bin/python benchmarks/grid_s.py                # full grid-S (slow on a small CPU)
    .venv/bin/python benchmarks/grid_s.py --quick        # n 500, 4 x 5 layers, for iteration
    .venv/bin/python benchmarks/grid_s.py --metrics linear_cka,rsa --pairs-subset 2 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.metadata
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers as P  # noqa: E402  (benchmarks/peers.py)

# ----------------------------------------------------------------------------------------------------------------
# the grid


@dataclasses.dataclass(frozen=True)
class Grid:
    """Shape of a benchmark grid: ``n`` stimuli, ``vision = (layers, width)``, ``language = (layers, width)``."""

    n: int
    vision: tuple[int, int]
    language: tuple[int, int]
    shared_dim: int = 64
    seed: int = 0

    @property
    def pairs(self) -> int:
        return self.vision[0] * self.language[0]

    @property
    def activation_bytes(self) -> int:
        return 4 * self.n * (self.vision[0] * self.vision[1] + self.language[0] * self.language[1])

    def describe(self) -> str:
        (lx, px), (ly, py) = self.vision, self.language
        return f"n={self.n}, {lx} x {px} (vision) vs {ly} x {py} (language), {self.pairs} pairs"


GRID_S = Grid(n=2000, vision=(12, 768), language=(16, 2048))
GRID_QUICK = Grid(n=500, vision=(4, 768), language=(5, 2048))


def make_layers(grid: Grid) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random float32 layers with a planted shared subspace.

    Every layer of both models mixes one shared latent ``[n, shared_dim]`` (the "scene"), a latent private to its
    model, and isotropic noise. The shared latent's weight peaks at mid depth, so the grid has structure (some pairs
    align more than others) and every metric sees a range of scores.
    """
    rng = np.random.default_rng(grid.seed)
    k = grid.shared_dim
    shared = rng.standard_normal((grid.n, k), dtype=np.float32)

    def model(n_layers, width):
        private = rng.standard_normal((grid.n, k), dtype=np.float32)
        layers = []
        for l in range(n_layers):
            depth = l / max(n_layers - 1, 1)
            w_shared = np.float32(0.2 + 0.8 * math.sin(math.pi * depth))
            mix_s = rng.standard_normal((k, width), dtype=np.float32) / np.float32(math.sqrt(k))
            mix_p = rng.standard_normal((k, width), dtype=np.float32) / np.float32(math.sqrt(k))
            noise = rng.standard_normal((grid.n, width), dtype=np.float32)
            layers.append(w_shared * (shared @ mix_s) + np.float32(0.7) * (private @ mix_p) + np.float32(0.5) * noise)
        return layers

    return model(*grid.vision), model(*grid.language)


def save_layers(Xs, Ys, folder: Path) -> None:
    for side, arrays in (("x", Xs), ("y", Ys)):
        for i, a in enumerate(arrays):
            np.save(folder / f"{side}_{i:02d}.npy", a)


def load_layers(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return ([np.load(p) for p in sorted(folder.glob("x_*.npy"))], [np.load(p) for p in sorted(folder.glob("y_*.npy"))])


# ----------------------------------------------------------------------------------------------------------------
# metrics, their peers and FLOP models


def _gram_flops(g: Grid) -> float:
    """Every layer's n x n Gram (or distance / cosine matrix), once: 2 n² d per layer."""
    (lx, px), (ly, py) = g.vision, g.language
    return 2.0 * g.n ** 2 * (lx * px + ly * py)


def _cross_flops(g: Grid) -> float:
    """Per pair, a [min(n, p), n] x [n, min(n, q)] product (Procrustes, SVCCA compares)."""
    (lx, px), (ly, py) = g.vision, g.language
    return g.pairs * 2.0 * g.n * min(g.n, px) * min(g.n, py)


def _ridge_flops(g: Grid, train_products: int, test_products: int = 1, folds: int = 5) -> float:
    """Both directions; per pair-direction and fold, ``train_products`` [n_train, r] x [r, q] products (the
    projection and, for LOO, one residual product per alpha) and ``test_products`` [n_test, r] x [r, q] ones (the
    held-out predictions), r = min(p, n_train - 1), as compare_linear_predictivity does them."""
    (lx, px), (ly, py) = g.vision, g.language
    n_test = g.n // folds
    n_train = g.n - n_test
    per_pair = min(px, n_train - 1) * py + min(py, n_train - 1) * px
    return g.pairs * folds * 2.0 * per_pair * (train_products * n_train + test_products * n_test)


ALPHAS = np.logspace(-3, 5, 17)  # align's DEFAULT_ALPHAS, given explicitly to the peers


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark row group: a metric with its keyword arguments, its peers and its FLOP model.

    Attributes:
      key: row label and ``--metrics`` name.
      metric: registry name passed to ``align.pairwise``.
      kwargs: metric keyword arguments.
      peers: builds the list of peers (lazily: they import their libraries).
      flops: matmul FLOPs of our computation on a grid (SVDs, eigendecompositions and sorts are not counted, so
        the fraction of the matmul rate is a lower bound for metrics dominated by them).
      flop_model: one line on what ``flops`` counts.
    """

    key: str
    metric: str
    kwargs: dict
    peers: Callable[[], list[P.Peer]]
    flops: Callable[[Grid], float]
    flop_model: str


def _ridge_peers():
    return [
        P.Peer("sklearn RidgeCV", "per_pair", P.sklearn_ridge_cv(ALPHAS),
               "RidgeCV(alpha_per_target=True), exact LOO, float64, per fold of KFold(5, shuffle, seed 0)"),
        P.Peer("himalaya KernelRidgeCV", "per_pair", P.himalaya_kernel_ridge_cv(ALPHAS),
               "torch backend; alpha per target by inner 5-fold CV (no exact LOO), same outer folds", oracle=False),
    ]


def _cka_peers(kernel, debiased):
    return lambda: [
        P.Peer("platonic-rep loop (torch)", "per_pair", P.platonic_cka(kernel, debiased),
               "per pair: both Grams + 3 HSICs with n^3 products; no +1e-6"),
        P.Peer("Kornblith-style loop (numpy)", "per_pair", P.kornblith_cka(kernel, debiased),
               "per pair: both Grams, center_gram, Frobenius product"),
    ]


CASES = {c.key: c for c in [
    Case("linear_predictivity", "linear_predictivity", {"alphas": ALPHAS}, _ridge_peers,
         lambda g: _ridge_flops(g, len(ALPHAS) + 1),
         "per pair-direction and fold: (alphas + 1) [n_train, r] x [r, q] products (LOO numerators, projection) and "
         "one [n_test, r] x [r, q] prediction"),
    Case("linear_predictivity_gcv", "linear_predictivity", {"alphas": ALPHAS, "alpha_selection": "gcv"},
         lambda: [P.Peer("sklearn RidgeCV", "per_pair", P.sklearn_ridge_cv(ALPHAS),
                         "exact LOO: GCV picks other alphas for some columns, so scores differ", oracle=False)],
         lambda g: _ridge_flops(g, 1),
         "per pair-direction and fold: one [n_train, r] x [r, q] projection and one [n_test, r] x [r, q] prediction"),
    Case("linear_cka", "linear_cka", {}, _cka_peers("linear", False), _gram_flops, "one Gram per layer"),
    Case("linear_cka_debiased", "linear_cka", {"debiased": True}, _cka_peers("linear", True), _gram_flops,
         "one Gram per layer"),
    Case("rbf_cka", "rbf_cka", {}, _cka_peers("rbf", False), _gram_flops, "one Gram per layer"),
    Case("rsa", "rsa", {}, lambda: [P.Peer("rsatoolbox", "grid", P.rsatoolbox_rsa(),
                                           "calc_rdm per layer, one compare(rdms_x, rdms_y, 'spearman') call")],
         _gram_flops, "one Gram per layer (the per-layer rank sort is not counted)"),
    Case("topological_rsa", "topological_rsa", {},
         lambda: [P.Peer("rsatoolbox", "grid", P.rsatoolbox_topological_rsa(),
                         "calc_rdm + geotopological_transform per layer RDM, one compare call")],
         _gram_flops, "one Gram per layer (quantiles and rank sorts not counted)"),
    Case("mutual_knn", "mutual_knn", {}, lambda: [P.Peer("platonic-rep loop (torch)", "per_pair",
                                                          P.platonic_mutual_knn(), "per pair: both kNN by argsort")],
         _gram_flops, "one cosine Gram per layer (top-k not counted)"),
    Case("cknna", "cknna", {}, lambda: [P.Peer("platonic-rep loop (torch)", "per_pair", P.platonic_cknna(),
                                                "per pair: 3 masked unbiased HSICs with n^3 products; no +1e-6")],
         _gram_flops, "one cosine Gram per layer"),
    Case("cycle_knn", "cycle_knn", {}, lambda: [P.Peer("platonic-rep loop (torch)", "per_pair",
                                                        P.platonic_cycle_knn(), "per pair: both kNN by argsort")],
         _gram_flops, "one cosine Gram per layer (top-k not counted)"),
    Case("procrustes", "procrustes", {}, lambda: [P.Peer("scipy orthogonal_procrustes", "per_pair",
                                                          P.scipy_procrustes(), "zero-padded to equal width, float32")],
         _cross_flops, "per pair the [min(n,p), n] x [n, min(n,q)] product (SVDs not counted)"),
    Case("svcca", "svcca", {}, lambda: [P.Peer("numpy SVCCA loop", "per_pair", P.numpy_svcca(),
                                                "per pair: both SVDs (float64) + CCA SVD")],
         _cross_flops, "per pair the [min(n,p), n] x [n, min(n,q)] product (SVDs not counted)"),
]}

DEFAULT_KEYS = [k for k in CASES if k != "linear_predictivity_gcv"] + ["linear_predictivity_gcv"]


# ----------------------------------------------------------------------------------------------------------------
# machine


THREADS_ENV = "ALIGN_BENCH_THREADS"


def thread_env(threads: int) -> dict[str, str]:
    """Environment that caps BLAS/LAPACK and OpenMP (torch) threads; XLA's CPU pool is capped by the affinity."""
    env = {THREADS_ENV: str(threads)}
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def pin_cpus(threads: int) -> list[int]:
    """Restrict this process (and the children it starts) to ``threads`` CPUs, so that no library -- XLA's thread
    pool ignores ``--xla_cpu_multi_thread_eigen=false`` -- uses more cores than the others."""
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
    return cpus


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "jax", "jaxlib", "torch", "scikit-learn", "rsatoolbox", "himalaya"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "absent"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["numpy BLAS"] = f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # noqa: BLE001  (the BLAS name is informative only)
        pass
    return out


def machine_info() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    threads = os.environ.get(THREADS_ENV, "library defaults")
    threads = f"{threads} (CPUs {sorted(os.sched_getaffinity(0))})"
    root = Path(__file__).resolve().parent.parent
    git = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--short", "--", "align"], capture_output=True, text=True)
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_kb / 2 ** 20, 1), "threads": threads,
            "git": git.stdout.strip(), "align_uncommitted": dirty.stdout.split("\n")[:-1],
            "platform": platform.platform(), "versions": _versions(), "loadavg_start": os.getloadavg()}


def matmul_rates(size: int = 4096, repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` float32 GFLOP/s of a ``size`` x ``size`` matmul in numpy and in jax (jitted)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    flops = 2.0 * size ** 3

    def best(fn):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return flops / min(times) / 1e9

    ja, jb = jnp.asarray(a), jnp.asarray(b)
    mm = jax.jit(lambda x, y: jnp.matmul(x, y, precision="highest"))
    return {"numpy": best(lambda: a @ b), "jax": best(lambda: mm(ja, jb).block_until_ready())}


# ----------------------------------------------------------------------------------------------------------------
# ours: align.pairwise in a subprocess


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(key: str, data: Path, result: Path, repeat_below: float) -> None:
    """Run ``align.pairwise`` for ``CASES[key]`` on the saved layers; write timings, memory and scores."""
    import jax

    import align

    case = CASES[key]
    Xs, Ys = load_layers(data)
    gc.collect()
    rss0 = _rss_kib("VmRSS")
    try:  # reset the peak-RSS counter (Linux), so VmHWM is the peak of the call
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    load = os.getloadavg()[0]
    t = time.perf_counter()
    grid = align.pairwise(case.metric, Xs, Ys, metric_kwargs=case.kwargs)
    first = time.perf_counter() - t
    peak = _rss_kib("VmHWM")
    warm = None
    if first < repeat_below:
        t = time.perf_counter()
        grid = align.pairwise(case.metric, Xs, Ys, metric_kwargs=case.kwargs)
        warm = time.perf_counter() - t
    scores = {d: np.asarray(grid.score(d), np.float64) for d in grid.directions}
    np.savez(result.with_suffix(".npz"), **scores)
    result.write_text(json.dumps({
        "first_s": first, "warm_s": warm, "rss_before_mib": rss0 / 1024, "peak_mib": peak / 1024,
        "peak_growth_mib": (peak - rss0) / 1024, "loadavg": load, "jax_devices": [str(d) for d in jax.devices()],
    }))


def run_ours(case: Case, data: Path, repeat_below: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "ours.json"
        cmd = [sys.executable, __file__, "--worker", case.key, "--data", str(data), "--result", str(result),
               "--repeat-below", str(repeat_below)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                    "stderr": proc.stderr[-4000:]}
        out = json.loads(result.read_text())
        with np.load(result.with_suffix(".npz")) as z:
            out["scores"] = {d: z[d] for d in z.files}
    return out


# ----------------------------------------------------------------------------------------------------------------
# peers


def _unit_score(ours: dict, i: int, j: int, direction: str) -> float:
    return float(ours["scores"][direction][i, j])


def run_peer(peer: P.Peer, Xs, Ys, directions: tuple[str, ...], subset: int | None, budget: float,
             default_subset: int) -> dict:
    """Time ``peer`` on the grid; per-pair peers on a subset of pairs when slow, scaled to all pair-directions.

    Returns a dict: ``seconds`` (measured or scaled to the whole grid), ``scaled`` (bool), ``units_done`` and
    ``units_total`` (pair-directions), ``scores`` ({(i, j, direction): value}).
    """
    lx, ly = len(Xs), len(Ys)
    if peer.mode == "grid":
        t = time.perf_counter()
        values = np.asarray(peer.fn(Xs, Ys), np.float64)
        seconds = time.perf_counter() - t
        scores = {(i, j, d): values[i, j] for i in range(lx) for j in range(ly) for d in directions}
        return {"seconds": seconds, "scaled": False, "units_done": lx * ly, "units_total": lx * ly, "scores": scores}

    def one(i, j, d):
        return peer.fn(Ys[j], Xs[i]) if d == "y_to_x" else peer.fn(Xs[i], Ys[j])

    small = slice(0, min(60, Xs[0].shape[0]))
    one_small = peer.fn(Xs[0][small], Ys[0][small])  # warm-up: imports, first-call overheads (not timed)
    del one_small
    order = np.random.default_rng(1).permutation(lx * ly)  # a fixed, spread-out subset of pairs comes first
    pairs = [(int(k) // ly, int(k) % ly) for k in order]
    units = [(i, j, d) for i, j in pairs for d in directions]
    total = len(units)
    scores, times = {}, []
    limit = total if subset is None else min(total, subset * len(directions))
    for u in units:
        if len(times) >= limit:
            break
        t = time.perf_counter()
        scores[u] = one(*u)
        times.append(time.perf_counter() - t)
        print(f"#     {peer.name} pair {u}: {times[-1]:.2f} s", flush=True)
        if subset is None and len(times) == 1 and times[0] * total > budget:
            limit = min(total, default_subset * len(directions))
    done = len(times)
    seconds = sum(times) if done == total else float(np.mean(times)) * total
    return {"seconds": seconds, "scaled": done < total, "units_done": done, "units_total": total, "scores": scores}


# ----------------------------------------------------------------------------------------------------------------
# the table


def _fmt(x, spec=".3g"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return format(x, spec)


def evaluate(case: Case, grid: Grid, ours: dict, peer: P.Peer, res: dict, rate: float) -> dict:
    our_s = ours["warm_s"] if ours.get("warm_s") is not None else ours["first_s"]
    diffs = [abs(_unit_score(ours, i, j, d) - v) for (i, j, d), v in res["scores"].items()]
    flops = case.flops(grid)
    return {
        "metric": case.key, "peer": peer.name, "ours_first_s": ours["first_s"], "ours_warm_s": ours.get("warm_s"),
        "peer_s": res["seconds"], "peer_scaled": res["scaled"], "units": f"{res['units_done']}/{res['units_total']}",
        "ratio": res["seconds"] / our_s, "ratio_first": res["seconds"] / ours["first_s"],
        "max_abs_diff": float(np.max(diffs)) if diffs else float("nan"), "oracle": peer.oracle,
        "gflops": flops / 1e9, "matmul_fraction": flops / our_s / 1e9 / rate,
        "peak_growth_mib": ours["peak_growth_mib"], "mem_ratio": ours["peak_growth_mib"] * 2 ** 20 / grid.activation_bytes,
        "loadavg": ours["loadavg"], "note": peer.note,
    }


HEADER = ("| metric | ours first call s | ours warm s | peer | peer s | peer pairs timed | speed-up (warm) | "
          "speed-up (first) | max abs diff | matmul GFLOP | % of matmul rate | peak mem growth / activations | "
          "load |")


def table_row(r: dict) -> str:
    diff = _fmt(r["max_abs_diff"], ".1e") + ("" if r["oracle"] else " (n/o)")
    peer_s = _fmt(r["peer_s"], ".1f") + (" (scaled)" if r["peer_scaled"] else "")
    return (f"| {r['metric']} | {_fmt(r['ours_first_s'], '.2f')} | {_fmt(r['ours_warm_s'], '.2f')} | {r['peer']} | "
            f"{peer_s} | {r['units']} | {_fmt(r['ratio'], '.1f')}x | {_fmt(r['ratio_first'], '.1f')}x | {diff} | "
            f"{_fmt(r['gflops'], '.0f')} | {_fmt(100 * r['matmul_fraction'], '.0f')}% | "
            f"{_fmt(r['peak_growth_mib'], '.0f')} MiB = {_fmt(r['mem_ratio'], '.2f')}x | {_fmt(r['loadavg'], '.1f')} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="n 500, 4 x 768 vs 5 x 2048 layers")
    ap.add_argument("--metrics", default=",".join(DEFAULT_KEYS), help=f"comma-separated, from {sorted(CASES)}")
    ap.add_argument("--pairs-subset", type=int, default=None,
                    help="time per-pair peers on exactly K layer pairs (default: all pairs if the estimate is under "
                         "--peer-budget seconds, else 4 pairs)")
    ap.add_argument("--peer-budget", type=float, default=60.0, help="seconds a per-pair peer may take on all pairs")
    ap.add_argument("--repeat-below", type=float, default=120.0,
                    help="also time a second (warm) align.pairwise call when the first took less than this")
    ap.add_argument("--no-peers", action="store_true", help="time align.pairwise only")
    ap.add_argument("--threads", type=int, default=None,
                    help="restart pinned to N CPUs (sched_setaffinity) with OPENBLAS/OMP/MKL_NUM_THREADS=N, for ours "
                         "and every peer alike; default: all CPUs and the libraries' own thread counts")
    ap.add_argument("--json", type=Path, default=None, help="write the machine description and rows here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        worker(args.worker, args.data, args.result, args.repeat_below)
        return 0
    if args.threads is not None and os.environ.get(THREADS_ENV) != str(args.threads):
        pin_cpus(args.threads)
        os.environ.update(thread_env(args.threads))
        os.execv(sys.executable, [sys.executable, *sys.argv])  # numpy, torch and XLA read these at start-up

    keys = [k.strip() for k in args.metrics.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CASES]
    if unknown:
        ap.error(f"unknown metric(s) {unknown}; choose from {sorted(CASES)}")
    grid = GRID_QUICK if args.quick else GRID_S

    info = machine_info()
    print(f"# grid-{'quick' if args.quick else 'S'}: {grid.describe()}; activations "
          f"{grid.activation_bytes / 2 ** 20:.0f} MiB", flush=True)
    print(f"# machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM; threads {info['threads']}; "
          f"load {info['loadavg_start']}")
    print("# versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()), flush=True)
    print(f"# align at git {info['git']}; uncommitted under align/: {info['align_uncommitted'] or 'none'}")
    rates = matmul_rates()
    rate = max(rates.values())
    print(f"# float32 4096^2 matmul: numpy {rates['numpy']:.0f} GFLOP/s, jax {rates['jax']:.0f} GFLOP/s "
          f"(reference rate {rate:.0f})", flush=True)

    Xs, Ys = make_layers(grid)
    rows, failures = [], {}
    with tempfile.TemporaryDirectory(prefix="align-grid-s-") as tmp:
        data = Path(tmp)
        save_layers(Xs, Ys, data)
        for key in keys:
            case = CASES[key]
            print(f"# {key}: align.pairwise ...", flush=True)
            ours = run_ours(case, data, args.repeat_below)
            if "error" in ours:
                failures[key] = ours["error"]
                print(f"#   FAILED: {ours['error']}\n{ours.get('stderr', '')}", flush=True)
                continue
            warm = ours["warm_s"]
            print(f"#   first call {ours['first_s']:.2f} s" + (f", warm {warm:.2f} s" if warm else "")
                  + f", peak growth {ours['peak_growth_mib']:.0f} MiB, load {ours['loadavg']:.1f}", flush=True)
            directions = tuple(ours["scores"])
            if args.no_peers:
                continue
            for peer in case.peers():
                print(f"#   peer {peer.name} ...", flush=True)
                res = run_peer(peer, Xs, Ys, directions, args.pairs_subset, args.peer_budget, default_subset=4)
                row = evaluate(case, grid, ours, peer, res, rate)
                rows.append(row)
                print(table_row(row), flush=True)

    print()
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for r in rows:
        print(table_row(r))
    print()
    print("speed-up = peer seconds / ours (warm call when timed, else the first call); 'peer s (scaled)' = mean "
          "time per pair-direction on the pairs timed x all pair-directions; '(n/o)' = the peer is not an oracle "
          "(different alpha selection), its difference is informative only; % of matmul rate = our matmul FLOPs "
          "(model below) / our seconds / the better of the numpy and jax 4096^2 float32 rates; memory = peak RSS "
          "growth of the align.pairwise call (inputs already loaded) / activation bytes.")
    for key in keys:
        if key in CASES and key not in failures:
            print(f"- {key}: FLOPs = {CASES[key].flop_model}")
    for r in rows:
        print(f"- {r['metric']} vs {r['peer']}: {r['note']}")
    for key, err in failures.items():
        print(f"- {key}: align.pairwise FAILED: {err}")
    if args.json:
        info["loadavg_end"] = os.getloadavg()
        args.json.write_text(json.dumps({"grid": dataclasses.asdict(grid), "machine": info, "matmul_gflops": rates,
                                         "rows": rows, "failures": failures, "argv": sys.argv}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
