"""Regenerate every figure of the paper's story and a report of its findings (`make figures`).

    python paper_figures/make_figures.py [--figures-only] [--only NAME ...]

1. runs the experiments of this folder's configs (`align experiment CONFIG` for each; every job skips what exists,
   so a warm run only reads tables): layerwise, perturbation, aggregation (captions, images), preference (COCO,
   synthetic, Pick-a-Pic layout);
2. runs the figure scripts (fig_*.py), which only read the results tables;
3. writes results/figures/REPORT.md: each finding of findings.py (the seven of issue 5 and the depth asymmetry,
   whose bootstrap over stimuli is computed once from the layerwise stores) with its statistic and whether it holds
   on this data, the figures, the exclusions and the wall times.

Data: real COCO images and captions from ../shared/data/coco_captions_subset; when that folder is absent the COCO
configs run on the synthetic scenes instead (the report says so). The Pick-a-Pic-layout file is generated here
(results/paper/data/pickapic_synthetic.parquet) from synthetic scenes, because no Pick-a-Pic data is available.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXPERIMENTS = ("layerwise", "perturbation", "aggregation_captions", "aggregation_images", "preference_coco",
               "preference_synthetic", "preference_pickapic")
COCO = "../shared/data/coco_captions_subset"
PICKAPIC = "results/paper/data/pickapic_synthetic.parquet"
PICKAPIC_PAIRS = 120


def generate_pickapic(path: Path, n: int = PICKAPIC_PAIRS, seed: int = 7) -> Path:
    """A Pick-a-Pic-layout Parquet file (caption, jpg_0, jpg_1, label_0, label_1) from synthetic scenes.

    Per scene: its first caption; a rendering of the scene (the faithful image, labelled preferred) and a rendering
    of the scene with one attribute wrong (colour, shape or count), on a random side. Written atomically; reused.
    """
    if path.exists():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from align.data import render_scene
    from align.data import synthetic_scenes

    scenes = synthetic_scenes(REPO / "results" / "paper" / "stimuli", n=n, seed=seed)
    rng = np.random.default_rng(seed)
    rows = {"caption": [], "jpg_0": [], "jpg_1": [], "label_0": [], "label_1": []}
    for i, s in enumerate(scenes.stimuli):
        with open(s.image, "rb") as f:
            faithful = f.read()
        wrong, _, _ = render_scene(s.extra["wrong_description"], 224, np.random.default_rng([seed, i, 99]))
        buf = io.BytesIO()
        Image.fromarray(wrong).save(buf, format="PNG")
        side = int(rng.integers(2))
        images = (faithful, buf.getvalue()) if side == 0 else (buf.getvalue(), faithful)
        rows["caption"].append(s.captions[0])
        rows["jpg_0"].append(images[0])
        rows["jpg_1"].append(images[1])
        rows["label_0"].append(1.0 if side == 0 else 0.0)
        rows["label_1"].append(0.0 if side == 0 else 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    pq.write_table(pa.table(rows), tmp)
    os.replace(tmp, path)
    return path


def run_experiments(names, overrides_for, log) -> dict[str, float]:
    from align.config import load_config
    from align.experiments import preflight
    from align.experiments import run_experiment

    configs = {name: load_config(HERE / f"{name}.toml", overrides_for(name)) for name in names}
    pending = [cfg.output for cfg in configs.values()]  # e.g. the layerwise output that peaks_from names
    for cfg in configs.values():  # every config's user errors before the first experiment runs
        preflight(cfg, pending=pending)
    timings = {}
    for name in names:
        t0 = time.perf_counter()
        log(f"\n=== experiment {name} ===")
        cfg = configs[name]
        run_experiment(cfg, progress=False, log=log)
        timings[name] = time.perf_counter() - t0
        log(f"=== {name}: {timings[name]:.0f} s ===")
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--figures-only", action="store_true", help="only redraw figures and the report")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, help="run only these experiments")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(HERE))
    import matplotlib

    matplotlib.use("Agg")

    def log(msg):
        print(msg, flush=True)

    t_start = time.perf_counter()
    coco = Path(COCO).is_dir()
    if not coco:
        log(f"{COCO} is absent: the COCO experiments run on synthetic scenes instead")

    def overrides_for(name):
        from align.config import load_config

        if coco or load_config(HERE / f"{name}.toml").stimuli.kind != "coco":
            return {}
        return {"stimuli.kind": "synthetic", "stimuli.root": None, "stimuli.n": 300}

    timings = {}
    if not args.figures_only:
        generate_pickapic(REPO / PICKAPIC)
        timings = run_experiments(args.only or EXPERIMENTS, overrides_for, log)
    figures = REPO / "results" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    import fig_aggregation
    import fig_layerwise
    import fig_perturbation
    import fig_preference
    import findings

    t0 = time.perf_counter()
    drawn = {}
    for module in (fig_layerwise, fig_perturbation, fig_aggregation, fig_preference):
        drawn[module.__name__] = module.draw(REPO / "results" / "paper", figures)
    timings["figures"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    old = figures / "timings.json"
    history = json.loads(old.read_text()) if old.exists() else []
    history.append({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "figures_only": args.figures_only, **timings})
    old.write_text(json.dumps(history, indent=1))
    log("report: deciding the findings (the depth asymmetry's bootstrap runs once, from the layerwise stores)")
    report = findings.write_report(REPO / "results" / "paper", figures, drawn, history, coco=coco)
    # the same report as one interactive page: the layerwise heatmaps (align.report), REPORT.md below them
    from align.report import write_html_report

    page = write_html_report(REPO / "results" / "paper" / "layerwise", figures / "REPORT.html",
                             config=(HERE / "layerwise.toml").read_text(), timings=history[-1],
                             title="align: the paper's findings on this data", notes=report)
    log(f"\nfigures: {figures}/\nreport: {report} (interactive: {page})\ntotal {timings['total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
