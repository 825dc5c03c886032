"""`make robustness`: does each finding hold under every combination of the method choices the paper leaves open?

    python paper_figures/robustness.py [--report-only]

The paper does not say how it pooled, preprocessed, scored or chose captions, so each finding is decided under
every combination of (``robustness.toml`` ``[choices]``): vision pooling (``cls``, ``mean``), language pooling
(``mean``, ``last``), per-layer preprocessing (``none``, ``zscore``, ``clip(q=0.95)``), metric (linear
predictivity, linear CKA, RSA, mutual-kNN) and caption (``first``, ``mean`` of the five): 96 specifications.

1. From this folder's configs it derives, per caption choice, one layerwise config (every pooling and metric,
   every preprocessing option in one run) and, per caption x preprocessing option, a perturbation, an aggregation
   and one preference config per metric (the metric picks the preference's peak layers), all under
   ``results/robustness/caption-<c>/``. Activation stores are shared with ``make figures`` (``activations`` in the
   TOML: each pooling is one more store of the same forward pass), and every job skips what exists, so a warm run
   only reads tables.
2. ``robustness_eval.py`` decides findings 1-8 per specification and model pair (the definitions of
   ``finding_defs.py``, with the specification's metric deciding) and writes ``results/robustness/``:
   ``cases.parquet`` (one row per finding, specification and case), ``specs.parquet`` (per finding and
   specification: median effect, verdict), ``ROBUSTNESS.md`` and one specification-curve figure per finding
   (``fig_robustness.py``).

A pooling a model cannot have (``cls`` of a CNN; ``last`` of a bidirectional encoder, whose last token does not
summarise the sentence) is not extracted: its cases are counted as skipped, with the reason, in the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

#: The base config of each experiment kind (this folder), from which the robustness configs are derived.
BASE = {"layerwise": "layerwise.toml", "perturbation": "perturbation.toml", "aggregation": "aggregation_captions.toml",
        "preference": "preference_coco.toml"}
AXES = ("vision_pooling", "language_pooling", "preprocess", "metric", "caption")
_TOP = {"output", "activations", "choices", "models", "experiment"}
_CHOICES = {"vision_pooling", "language_pooling", "preprocess", "metrics", "caption"}
_EXPERIMENT = {"image_conditions", "caption_conditions", "n_perm", "n_boot", "null_perm", "depth_boot",
               "depth_metrics", "seed"}
#: CNN families (no class token): ``cls`` pooling is skipped for them.
_CNN = ("MobileNet", "ResNet", "EfficientNet", "ConvNext", "ConvNeXt", "RegNet", "VGG")


def load_spec(path: Path = HERE / "robustness.toml") -> dict:
    """The robustness TOML, checked: unknown keys and empty choice lists are errors naming the key."""
    spec = tomllib.loads(Path(path).read_text())
    for where, allowed, table in (("top level", _TOP, spec), ("[choices]", _CHOICES, spec.get("choices", {})),
                                  ("[experiment]", _EXPERIMENT, spec.get("experiment", {})),
                                  ("[models]", {"vision", "language"}, spec.get("models", {}))):
        unknown = sorted(set(table) - allowed)
        missing = sorted(allowed - set(table)) if where != "top level" else sorted(_TOP - set(table))
        if unknown or missing:
            raise ValueError(f"{path} {where}: unknown key(s) {unknown}, missing {missing}")
    for key, values in {**spec["choices"], **spec["models"]}.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: {key} must be a non-empty list, got {values!r}")
    return spec


def pooling_skip(model: str, pooling: str) -> str | None:
    """Why ``model`` cannot be pooled with ``pooling`` (None when it can)."""
    from align.extract import resolve_model

    spec = resolve_model(model)
    if pooling == "cls" and (spec.backend == "torch_module" or any(c in spec.architecture for c in _CNN)):
        return f"cls pooling of a CNN ({spec.architecture}: feature maps, no class token)"
    if pooling == "last" and spec.modality == "language" and "CausalLM" not in spec.architecture:
        return (f"last-token pooling of a bidirectional encoder ({spec.architecture}: no causal mask, the last "
                f"token does not summarise the sentence)")
    return None


def skipped_poolings(spec: dict) -> list[dict]:
    """``{"model", "side", "pooling", "reason"}`` for every (model, pooling) of the choices that is not computed."""
    out = []
    for side, key in (("vision", "vision_pooling"), ("language", "language_pooling")):
        for model in spec["models"][side]:
            for pooling in spec["choices"][key]:
                why = pooling_skip(model, pooling)
                if why:
                    out.append({"model": model, "side": side, "pooling": pooling, "reason": why})
    return out


def _models(spec: dict) -> list[dict]:
    skip = {(s["model"], s["pooling"]) for s in skipped_poolings(spec)}
    models = []
    for side, key in (("vision", "vision_pooling"), ("language", "language_pooling")):
        for model in spec["models"][side]:
            keep = [p for p in spec["choices"][key] if (model, p) not in skip]
            if keep:
                models.append({"name": model, "pooling": keep})
    return models


def metric_tag(metric: str) -> str:
    """A folder-safe short name of a metric spec (its registry name)."""
    return metric.split("(")[0]


def prep_tag(preprocess: str) -> str:
    return preprocess.replace("(", "-").replace(")", "").replace("=", "").replace(".", "")


def caption_folder(spec: dict, caption: str) -> Path:
    return REPO / spec["output"] / f"caption-{caption}"


def derived(spec: dict) -> list[tuple[str, dict, Path]]:
    """``(label, config mapping, base TOML)`` of every run, in order (a caption's layerwise run first: the other
    kinds read their peak layers from it)."""
    ch, ex = spec["choices"], spec["experiment"]
    models = _models(spec)
    out = []
    for caption in ch["caption"]:
        folder = caption_folder(spec, caption)

        def config(kind: str, name: str, *, metrics, preprocess, experiment: dict) -> tuple[str, dict, Path]:
            base = tomllib.loads((HERE / BASE[kind]).read_text())
            base.update(name=f"robustness-{name}", output=str(folder / name), models=models)
            base["stimuli"] = {**base["stimuli"], "base_dir": str(HERE)}
            if base["stimuli"].get("kind") == "coco" and not (HERE / base["stimuli"]["root"]).is_dir():
                base["stimuli"] = {"kind": "synthetic", "n": base["stimuli"].get("n", 300)}  # as make_figures
            base["score"] = {**base.get("score", {}), "metrics": list(metrics), "preprocess": preprocess,
                             "caption": caption}
            base["experiment"] = {**{k: v for k, v in base["experiment"].items() if k in ("kind", "contrasts",
                                                                                        "folds", "aggregate",
                                                                                        "k_max", "layers")},
                                  "seed": ex["seed"], **experiment}
            return f"caption {caption}: {name}", base, HERE / BASE[kind]

        out.append(config("layerwise", "layerwise", metrics=ch["metrics"], preprocess=list(ch["preprocess"]),
                          experiment={"n_perm": ex["null_perm"]}))
        peaks = {"peaks_from": str(folder / "layerwise"), "n_perm": ex["n_perm"], "n_boot": ex["n_boot"]}
        for prep in ch["preprocess"]:
            p = prep_tag(prep)
            out.append(config("perturbation", f"perturbation-{p}", metrics=ch["metrics"], preprocess=prep,
                              experiment={**peaks, "image_conditions": ex["image_conditions"],
                                          "caption_conditions": ex["caption_conditions"], "grid_metrics": []}))
            if caption == "first":  # the aggregation varies the number of captions itself
                out.append(config("aggregation", f"aggregation-{p}", metrics=ch["metrics"], preprocess=prep,
                                  experiment={**peaks, "grid_metrics": []}))
            for metric in ch["metrics"]:
                out.append(config("preference", f"preference-{p}-{metric_tag(metric)}", metrics=[metric],
                                  preprocess=prep, experiment={**peaks, "n_perm": 1000, "n_boot": 1000}))
    return out


def link_shared(spec: dict) -> None:
    """Each caption folder's ``activations`` and ``stimuli`` point at the shared ones (the experiments keep their
    stores beside their output folders)."""
    shared = REPO / spec["activations"]
    for caption in spec["choices"]["caption"]:
        folder = caption_folder(spec, caption)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("activations", "stimuli"):
            (shared / name).mkdir(parents=True, exist_ok=True)
            link = folder / name
            if not link.is_symlink():
                if link.exists():
                    raise FileExistsError(f"{link} exists and is not a link to {shared / name}; move it away")
                link.symlink_to(shared / name, target_is_directory=True)


def run_all(spec: dict, log) -> dict[str, float]:
    """Run every derived config (each job skips what exists); returns the seconds per run."""
    from align.config import parse_config
    from align.experiments import preflight
    from align.experiments import run_experiment

    link_shared(spec)
    runs = [(label, parse_config(data, source=str(base))) for label, data, base in derived(spec)]
    pending = [cfg.output for _, cfg in runs]
    for _, cfg in runs:  # every config's user errors before the first experiment runs
        preflight(cfg, pending=pending)
    timings = {}
    for i, (label, cfg) in enumerate(runs, 1):
        t0 = time.perf_counter()
        log(f"\n=== [{i}/{len(runs)}] {label} ===")
        run_experiment(cfg, progress=False, log=log)
        timings[label] = time.perf_counter() - t0
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(HERE / "robustness.toml"), help="the robustness TOML")
    parser.add_argument("--report-only", action="store_true", help="only decide the findings from existing tables")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from align import configure_threads

    configure_threads()  # before any jax work: thread pools sized to this process's CPUs, idle workers sleep
    import matplotlib

    matplotlib.use("Agg")
    import robustness_report

    def log(msg):
        print(msg, flush=True)

    spec = load_spec(Path(args.config))
    t0 = time.perf_counter()
    timings = {} if args.report_only else run_all(spec, log)
    t_runs = time.perf_counter() - t0
    log("\n=== deciding the findings per specification ===")
    report = robustness_report.write_all(spec, log=log)
    total = time.perf_counter() - t0
    log(f"\nrobustness: {report}\nexperiments {t_runs:.0f} s, total {total:.0f} s")
    timings["total"] = total
    return 0


if __name__ == "__main__":
    sys.exit(main())
