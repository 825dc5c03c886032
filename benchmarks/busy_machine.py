"""Busy-machine benchmark: the demo's scoring on a quiet machine and beside a CPU hog, thread setup off and on.

The workload is the demo's scoring step (configs/demo.toml: linear predictivity and linear CKA, every layer pair of
DINOv2 ViT-S/14 against SmolLM2-135M) on generated activations of the same shapes: 13 layers of width 384 against
31 layers of width 576, n = 500 stimuli, a shared 16-dimensional latent; by default 4 x 8 of those layers, so
that the four runs take a few minutes on 2 cores (``--layers 13,31`` for the whole grid). Linear predictivity uses
``alpha_selection="gcv"`` to keep the run short (the demo's default is exact LOO: same SVDs, more products).

Each measurement runs the workload in a fresh Python process (so XLA and OpenBLAS start their thread pools under
the setting being measured), compilation included, as a cold ``align score`` would:

- ``off``: the libraries' defaults;
- ``on``: ``align._threads.configure_threads()`` first, as the ``align`` command line does (see that module);

each alone ("quiet") and beside N busy-loop processes, N = the CPUs this process may use ("busy"). The hogs are
bounded in time (``--hog-seconds``) and killed when the measurement ends. The script prints one line per run and
the busy/quiet ratio per setting (issue 10's target: at most 2.5x).

    .venv/bin/python benchmarks/busy_machine.py                   # 4 x 8 layers, both settings, one round
    .venv/bin/python benchmarks/busy_machine.py --layers 13,31 --settings on   # the demo's whole grid

"Quiet" means no hog of ours: on a shared machine other users' load still counts, so the 1-minute load average
is printed with every run; repeat the benchmark and compare rounds before trusting a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _workload(layers_x: int, layers_y: int, width_x: int, width_y: int, n: int, setting: str) -> dict:
    """Run in the child: thread setup (``on``), then score both metrics over the grid; times in seconds."""
    started = time.perf_counter()
    import align  # noqa: F401 - imported first, as the command line does before calling configure_threads
    config = None
    if setting == "on":
        from align._threads import configure_threads

        config = str(configure_threads())
    import warnings

    import numpy as np

    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 16))

    def layers(count, width):
        return [(z @ rng.normal(size=(16, width)) * (0.2 + i / count) + rng.normal(size=(n, width)))
                .astype(np.float32) for i in range(count)]

    xs, ys = layers(layers_x, width_x), layers(layers_y, width_y)
    times = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AlphaGridWarning on random data is not what is measured
        t = time.perf_counter()
        ridge = align.pairwise("linear_predictivity", xs, ys, metric_kwargs={"alpha_selection": "gcv"},
                               progress=False)
        times["linear_predictivity_s"] = time.perf_counter() - t
        t = time.perf_counter()
        cka = align.pairwise("linear_cka", xs, ys, progress=False)
        times["linear_cka_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - started
    times["checksum"] = float(np.nansum(ridge.scores["x_to_y"]) + np.nansum(cka.score()))
    times["config"] = config
    return times


def _hog(seconds: float) -> subprocess.Popen:
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _measure(args, setting: str, hogs: int) -> dict:
    """One child process running the workload, beside ``hogs`` busy loops (killed when it ends)."""
    procs = [_hog(args.hog_seconds) for _ in range(hogs)]
    try:
        time.sleep(0.5 if hogs else 0.0)  # let the hogs get going
        load = os.getloadavg()[0]
        cmd = [sys.executable, __file__, "--child", setting, "--layers", f"{args.layers[0]},{args.layers[1]}",
               "--widths", f"{args.widths[0]},{args.widths[1]}", "--n", str(args.n)]
        # both settings start from the libraries' defaults: none of the variables the thread setup would set
        from align import _threads

        ours = {*_threads.COUNT_VARIABLES, *_threads.BLAS_VARIABLES, *_threads.WAIT_VARIABLES}
        env = {k: v for k, v in os.environ.items() if k not in ours and (k != "ALIGN_THREADS" or setting == "on")}
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=args.hog_seconds if hogs else None)
        if done.returncode != 0:
            raise RuntimeError(f"the {setting} child failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["load_1min"] = load
        return result
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="4,8", help="layers of the x and y model (default 4,8, a few minutes "
                        "for all four runs on 2 cores; 13,31 is the demo's whole grid)")
    parser.add_argument("--widths", default="384,576", help="widths of the x and y layers (default 384,576)")
    parser.add_argument("--n", type=int, default=500, help="stimuli (default 500)")
    parser.add_argument("--settings", default="off,on", help="thread settings to compare (default off,on)")
    parser.add_argument("--rounds", type=int, default=1, help="times to repeat every measurement (default 1)")
    parser.add_argument("--hogs", type=int, default=None, help="busy loops beside the busy runs (default: the "
                        "CPUs this process may use)")
    parser.add_argument("--hog-seconds", type=float, default=600.0, help="upper bound on a hog's life and on a "
                        "busy run (default 600)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.layers = tuple(int(v) for v in args.layers.split(","))
    args.widths = tuple(int(v) for v in args.widths.split(","))
    if args.child:
        print(json.dumps(_workload(*args.layers, *args.widths, args.n, args.child)))
        return 0

    sys.path.insert(0, str(ROOT))
    from align._threads import usable_cpus

    hogs = usable_cpus() if args.hogs is None else args.hogs
    settings = args.settings.split(",")
    print(f"busy-machine benchmark: {args.layers[0]} x {args.layers[1]} layers of widths {args.widths}, n = "
          f"{args.n}; linear_predictivity (gcv) + linear_cka; busy = beside {hogs} busy loop(s); usable CPUs "
          f"{usable_cpus()}; os.cpu_count() {os.cpu_count()}", flush=True)
    runs: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for setting in settings:
            for label, count in (("quiet", 0), ("busy", hogs)):
                res = _measure(args, setting, count)
                runs.setdefault((setting, label), []).append(res["total_s"])
                print(f"round {r + 1} {setting:3s} {label:5s}: {res['total_s']:7.1f} s (ridge "
                      f"{res['linear_predictivity_s']:.1f} s, cka {res['linear_cka_s']:.1f} s; load "
                      f"{res['load_1min']:.1f}; checksum {res['checksum']:.4f})"
                      + (f"; setup: {res['config']}" if res["config"] else ""), flush=True)
    print("\nbusy/quiet ratio (median over rounds; target <= 2.5):")
    for setting in settings:
        quiet, busy = statistics.median(runs[setting, "quiet"]), statistics.median(runs[setting, "busy"])
        print(f"  {setting:3s}: quiet {quiet:7.1f} s, busy {busy:7.1f} s, ratio {busy / quiet:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
