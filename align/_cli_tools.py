"""The `align` commands that inspect and convert (export, show-model, metrics --config), the examples every
subcommand's ``--help`` ends with, and the ``offline`` column of ``align models``. Thin layers over library calls."""

from __future__ import annotations

import argparse
import json

#: One or more example command lines per subcommand, shown at the end of its ``--help``.
EXAMPLES = {
    "run": ["align run configs/smoke.toml", "align run configs/demo.toml --set stimuli.n=50 --quiet"],
    "extract": ["align extract configs/smoke.toml"],
    "score": ["align score configs/smoke.toml --set 'score.metrics=[\"linear_cka\"]'"],
    "plot": ["align plot configs/smoke.toml"],
    "experiment": ["align experiment paper_figures/perturbation.toml"],
    "report": ["align report results/smoke"],
    "figures": ["align figures", "align figures paper_figures --only layerwise"],
    "models": ["align models", "align models --json | head -20"],
    "metrics": ["align metrics", "align metrics --config configs/demo.toml   # also the config's score.probes"],
    "check-probe": ["align check-probe probes/cosine_centroid.py"],
    "export": ["align export results/smoke/activations/<set>/original/minilm-l6/mean-<hash>.parquet --format h5 "
               "--out minilm.h5", "align export STORE.parquet --format npy --out minilm_npy/"],
    "show-model": ["align show-model minilm-l6", "align show-model mobilenetv2-imagenet --layers 'features.1?'"],
}


def add_examples(subparsers: argparse._SubParsersAction) -> None:
    """Give every subcommand's ``--help`` an ``example(s):`` section (its epilog) from :data:`EXAMPLES`."""
    for name, parser in subparsers.choices.items():
        lines = EXAMPLES.get(name)
        if lines and not parser.epilog:
            parser.epilog = ("example:\n" if len(lines) == 1 else "examples:\n") + "\n".join(f"  {x}" for x in lines)
            parser.formatter_class = argparse.RawDescriptionHelpFormatter


def add_parsers(sub) -> None:
    """The subcommands of this module: export, show-model."""
    p = sub.add_parser("export", help="write a store's layers to .npy files, an .h5 file or a .pt file",
                       description="Write every layer of an activation store (a .parquet file under "
                                   "<output>/activations/) with its stimulus ids to another format: npy (a folder: "
                                   "one NNN_<layer>.npy per layer, stimulus_ids.json, layers.json, meta.json), h5 "
                                   "(datasets stimulus_ids and layers/<layer>), pt (torch.save of {'layers': "
                                   "{name: tensor}, 'stimulus_ids': [...], ...}).")
    p.add_argument("store", help="a finished activation store (.parquet)")
    p.add_argument("--format", required=True, choices=("npy", "h5", "pt"))
    p.add_argument("--out", required=True, help="the folder (npy) or file (h5, pt) to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p = sub.add_parser("show-model", help="list a model's layers with output shapes (one forward on a dummy input)",
                       description="Load a model and run one forward pass on a dummy input (a 64x64 grey image, or "
                                   "the text 'a photo'); list the layers extraction records, with their raw output "
                                   "shapes. These names are what [[models]] layers = \"PATTERN\" matches (fnmatch).")
    p.add_argument("name", help="a short name (align models), Hugging Face id, local folder or .gguf file")
    p.add_argument("--modality", choices=("vision", "language"), help="for Hugging Face ids outside the catalog")
    p.add_argument("--layers", action="append", metavar="PATTERN", help="mark the layers this fnmatch pattern "
                                                                         "selects (repeatable), as a config would")
    p.add_argument("--device", default="cpu", help="torch device for the forward pass (default cpu)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def cmd_export(args) -> int:
    from align.store import export_store

    out = export_store(args.store, args.out, format=args.format, overwrite=args.force)
    print(out)
    return 0


def cmd_show_model(args) -> int:
    from align.extract import select_layers
    from align.extract import show_model

    spec, layers = show_model(args.name, modality=args.modality, device=args.device)
    chosen = set(select_layers([x.name for x in layers], args.layers, model=spec.name)) if args.layers else None
    if args.json:
        print(json.dumps({"name": spec.name, "modality": spec.modality, "architecture": spec.architecture,
                          "layers": [{"index": x.index, "name": x.name, "shape": list(x.shape),
                                      **({"selected": x.index in chosen} if chosen is not None else {})}
                                     for x in layers]}, indent=2))
        return 0
    dummy = "one 64x64 grey image" if spec.modality == "vision" else "the text 'a photo'"
    print(f"{spec.name}: {spec.modality}, {spec.architecture or 'unknown architecture'}, {len(layers)} layers "
          f"(output shapes on {dummy}; stores keep one pooled vector of the last dimension, or channels, per "
          f"stimulus)")
    width = max(len(x.name) for x in layers) if layers else 4
    for x in layers:
        mark = "" if chosen is None else ("* " if x.index in chosen else "  ")
        print(f"  {mark}{x.index:3d}  {x.name:{width}s}  {list(x.shape)}")
    if chosen is not None:
        print(f"* = selected by {args.layers} ({len(chosen)} of {len(layers)})")
    return 0


def offline_label(row: dict) -> str:
    """The ``offline`` column of ``align models``: ``yes``, ``no``, or ``yes (first use converts, ~N min)`` for a
    model whose one-time conversion into the align cache has not run yet."""
    if not row["available_offline"]:
        return "no"
    if row.get("needs_conversion"):
        return f"yes (first use converts, ~{row.get('convert_minutes') or 1} min)"
    return "yes"


def config_probes(config: str, overrides: dict) -> dict[str, str]:
    """Load the ``score.probes`` of a config (paths as ``align run`` resolves them); returns metric name -> the
    probe that registered it.

    Raises:
      ConfigError: a probe file that does not exist, does not import, or registers no metric.
    """
    import align.metrics  # noqa: F401  (the built-ins first, so they are not counted as a probe's)
    from align.config import ConfigError
    from align.config import load_config
    from align.engine import load_probe
    from align.metrics import get_metric
    from align.metrics import list_metrics

    cfg = load_config(config, overrides)
    found = {}
    for probe in cfg.score.probes:
        before = set(list_metrics())
        try:
            module = load_probe(probe)  # once per process: a second call returns the loaded module
        except FileNotFoundError as e:
            raise ConfigError(f"{config}: score.probes: {e}") from None
        except Exception as e:  # the probe's own code failed: the user's error, named
            raise ConfigError(f"{config}: score.probes: cannot load probe {probe!r}: {type(e).__name__}: {e}") \
                from None
        mine = [name for name in list_metrics() if name not in before or any(
            getattr(fn, "__module__", None) == module.__name__
            for fn in (get_metric(name).compare, get_metric(name).prepare) if fn is not None)]
        if not mine:
            raise ConfigError(f"{config}: score.probes: probe {probe!r} registers no metric; call "
                              f"align.register_metric in it")
        found.update(dict.fromkeys(mine, probe))
    return found
