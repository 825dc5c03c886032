"""`align` command line: a thin layer over the library (parse arguments, show progress, print where outputs went).

    align run CONFIG        extract + score + plot, skipping what exists
    align extract CONFIG    only extract activations
    align score CONFIG      extract (if needed) + score
    align plot CONFIG       redraw heatmaps from the results table
    align experiment CONFIG run the config's [experiment] (layerwise, perturbation, aggregation, preference)
    align report RUN_DIR    write RUN_DIR/report.html: every heatmap, interactive, in one self-contained file
    align figures [DIR]     run DIR/make_figures.py (default paper_figures): experiments, figures, REPORT.md
    align models            list model short names, where each resolves, and whether it is available offline
    align metrics           list registered metrics (--config CFG: with the config's score.probes)
    align export STORE      write a store's layers to .npy / .h5 / .pt (--format, --out)
    align show-model NAME   list a model's layers with output shapes (the names `layers = "..."` matches)
    align check-probe FILE  put every metric a probe file registers through the battery (exit 1 if a check fails)
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
import time
from pathlib import Path


def _parse_overrides(items: list[str]) -> dict:
    import tomllib

    from align.config import ConfigError

    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. stimuli.n=50), got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
    return out


def _summary(results_path: Path) -> str:
    from align.results import best_layer_pairs, read_results

    frame = read_results(results_path)
    best = best_layer_pairs(frame)
    lines = ["best layer pair per model pair, metric and direction (highest score; lowest where lower = more "
             "aligned):"]
    for _, r in best.iterrows():
        direction = {"x_to_y": f"{r.model_x} -> {r.model_y}", "y_to_x": f"{r.model_y} -> {r.model_x}"}.get(
            r.direction, "symmetric")
        lines.append(f"  {r.metric:22s} {direction:50s} {r.model_x}({r.pooling_x}) layer {r.layer_x} "
                     f"(depth {r.rel_depth_x:.2f}) x {r.model_y}({r.pooling_y}) layer {r.layer_y} "
                     f"(depth {r.rel_depth_y:.2f}): {r.score:.3f}"
                     + ("" if r.higher_is_more_aligned else " (lower = more aligned)"))
    return "\n".join(lines)


def _load_checked(args, stages=("extract", "score", "plot")):
    """The command's config, validated and preflighted (``align.experiments.preflight``): every user error is
    raised here, before any extraction or scoring."""
    from align.config import load_config
    from align.experiments import preflight

    cfg = load_config(args.config, _parse_overrides(args.set))
    preflight(cfg, stages)
    return cfg


def _cmd_run(args, stages) -> int:
    from align.experiments import run

    cfg = _load_checked(args, stages)
    t0 = time.perf_counter()
    out = run(cfg, stages=stages, progress=not args.quiet)
    print(f"\nstores: {len(out.stores)} under {Path(next(iter(out.stores.values()))).parents[3] if out.stores else '-'}")
    if out.results is not None:
        print(f"results table: {out.results}")
        print(_summary(out.results))
    if out.heatmaps:
        print(f"heatmaps ({len(out.heatmaps)}): {out.heatmaps[0].parent}/")
        for p in out.heatmaps:
            print(f"  {p}")
    if getattr(out, "report", None) is not None:
        print(f"report: {out.report}")
    print(f"done in {time.perf_counter() - t0:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in out.timings.items())})")
    return 0


def _cmd_plot(args) -> int:
    from align.config import load_config
    from align.plots import save_heatmaps
    from align.results import read_results

    cfg = load_config(args.config, _parse_overrides(args.set))
    results = cfg.output_dir / "results.parquet"
    paths = save_heatmaps(read_results(results), cfg.output_dir / "heatmaps", dpi=cfg.plot.dpi,
                          formats=cfg.plot.formats, vmin=cfg.plot.vmin, vmax=cfg.plot.vmax, cmap=cfg.plot.cmap,
                          all_pairs=True, skip_existing=False,
                          remove_stale=True)  # the folder then holds exactly the figures of the table (+ all_pairs)
    for p in paths:
        print(p)
    return 0


def _cmd_report(args) -> int:
    from align.report import write_html_report

    print(write_html_report(args.run_dir, args.out))
    return 0


def _cmd_experiment(args) -> int:
    from align.experiments import run_experiment

    cfg = _load_checked(args)
    t0 = time.perf_counter()
    path = run_experiment(cfg, progress=not args.quiet)
    print(f"\n{cfg.experiment.kind} results table: {path}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_figures(args) -> int:
    import runpy

    script = Path(args.folder) / "make_figures.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} does not exist; `align figures` runs a folder's make_figures.py")
    # make_figures.py preflights every experiment config of the folder (align.experiments.preflight) before it
    # runs the first one
    sys.argv = [str(script), *args.args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _cmd_models(args) -> int:
    from align.extract import list_models

    from align._cli_tools import offline_label

    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    labels = [offline_label(r) for r in rows]
    w = max(len("offline"), *map(len, labels))
    print(f"{'name':36s} {'modality':9s} {'offline':{w}s} resolves to")
    for r, label in zip(rows, labels):
        print(f"{r['name']:36s} {r['modality']:9s} {label:{w}s} {r['resolves_to']}")
        if r.get("note"):
            print(f"{'':36s} {'':9s} {'':{w}s} note: {r['note']}")
    return 0


def _cmd_metrics(args) -> int:
    import align.metrics  # noqa: F401  (registers the built-ins)
    from align._cli_tools import config_probes
    from align.metrics import get_metric, list_metrics

    probes = config_probes(args.config, _parse_overrides(args.set)) if args.config else {}
    for name in list_metrics():
        m = get_metric(name)
        kind = "symmetric" if m.symmetric else "directional"
        better = "higher = more aligned" if m.higher_is_more_aligned else "lower = more aligned"
        origin = f" [probe {probes[name]}]" if name in probes else ""
        print(f"{name:24s} {kind:11s} {better:22s} {m.doc}{origin}")
    return 0


def _cmd_check_probe(args) -> int:
    from align.engine import check_probe

    try:
        reports = check_probe(args.probe)
    except (FileNotFoundError, ValueError):
        raise  # main() prints it and exits 2
    except Exception as e:  # the probe file itself failed to import: the user's error, not a failed check
        raise ValueError(f"cannot load probe {args.probe!r}: {type(e).__name__}: {e}") from e
    for report in reports.values():
        print(report)
    checks = [c for r in reports.values() for c in r.checks]
    failed = [f"{r.metric}:{c.name}" for r in reports.values() for c in r.failures]
    print(f"{len(reports)} metric(s), {len(checks)} checks: {sum(c.status == 'pass' for c in checks)} passed, "
          f"{len(failed)} failed, {sum(c.status == 'skip' for c in checks)} skipped"
          + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("run", "extract + score + plot, skipping what exists"),
                        ("extract", "extract activations only"),
                        ("score", "extract (if needed) and score"),
                        ("plot", "redraw heatmaps from the results table")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("config", help="a TOML run config (see configs/ and README 'Config reference')")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. stimuli.n=50")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    p = sub.add_parser("experiment", help="run the config's [experiment] (layerwise, perturbation, aggregation, "
                                          "preference), skipping what exists")
    p.add_argument("config", help="a TOML config with an [experiment] table (see paper_figures/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p = sub.add_parser("report", help="write one self-contained interactive HTML page of a run's heatmaps",
                       description="Write one self-contained HTML page (plotly.js inline, no network needed) of a "
                                   "run: every heatmap of RUN_DIR/results.parquet with selectors for metric, "
                                   "direction, model pair and condition/preprocess, hover labels with layer names, "
                                   "depths, score, CI and p, the best layer pairs, and the run's config, provenance "
                                   "and timings; writes RUN_DIR/report.html (or --out) and prints its path.")
    p.add_argument("run_dir", help="a run's output folder (the config's `output`), holding results.parquet")
    p.add_argument("--out", help="the HTML file to write (default RUN_DIR/report.html)")
    p = sub.add_parser("figures", help="run the paper's experiments and draw its figures (DIR/make_figures.py)")
    p.add_argument("folder", nargs="?", default="paper_figures")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed on to make_figures.py")
    p = sub.add_parser("models", help="list model short names and whether each is available offline")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("metrics", help="list registered metrics (with --config: also the config's score.probes)")
    p.add_argument("--config", help="a TOML config whose score.probes are loaded first")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p = sub.add_parser("check-probe", help="run the metric battery (align.check_metric) on every metric a probe "
                                           "file registers; exit 1 if any check fails")
    p.add_argument("probe", help="a .py file that calls align.register_metric (or an importable module name)")
    from align._cli_tools import add_examples, add_parsers

    add_parsers(sub)
    parser.add_argument("--version", action="version", version=f"align {_version()}")
    add_examples(sub)  # every subcommand's --help ends with an example
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """CLI warnings as one line (``warning: ...``) instead of Python's source-line format."""
    print(f"warning ({category.__name__}): {message}", file=file or sys.stderr, flush=True)


def _is_user_error(error: BaseException) -> bool:
    """Whether an exception is the user's to fix (a config, a path, a model, data: ConfigError and the library's
    other ValueError subclasses, OSError, ModelUnavailableError and other RuntimeErrors): one line, exit 2.
    Anything else (TypeError, KeyError, AssertionError, NotImplementedError, ...) is a bug in align: its traceback,
    a line saying so, exit 1."""
    if isinstance(error, (NotImplementedError, RecursionError)):
        return False
    return isinstance(error, (ValueError, OSError, RuntimeError))


def _one_line(error: BaseException) -> str:
    """The error's message on one line (a multi-line message is joined)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def _dispatch(args) -> int:
    if args.command == "run":
        return _cmd_run(args, ("extract", "score", "plot"))
    if args.command == "extract":
        return _cmd_run(args, ("extract",))
    if args.command == "score":
        return _cmd_run(args, ("extract", "score"))
    if args.command == "plot":
        return _cmd_plot(args)
    if args.command == "experiment":
        return _cmd_experiment(args)
    if args.command == "report":
        return _cmd_report(args)
    if args.command == "figures":
        return _cmd_figures(args)
    if args.command == "models":
        return _cmd_models(args)
    if args.command == "metrics":
        return _cmd_metrics(args)
    if args.command == "check-probe":
        return _cmd_check_probe(args)
    if args.command in ("export", "show-model"):
        from align import _cli_tools

        return {"export": _cli_tools.cmd_export, "show-model": _cli_tools.cmd_show_model}[args.command](args)
    raise AssertionError(f"unhandled command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 done; 1 a failed check (check-probe) or an internal error (a bug: its
    traceback is printed); 2 a user error (one line ``align <cmd>: error: ...``, no traceback); 130 interrupted."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning

    try:
        from align._threads import configure_threads
        configure_threads()  # thread pools sized to this process's CPUs (ALIGN_THREADS=N), before any work
        status = _dispatch(args)
        sys.stdout.flush()  # a closed pipe (`align models | head -1`) raises here, inside the handler below
        return status
    except KeyboardInterrupt:
        print(f"align {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout went away: not an error of align or of the input; stop writing, exit as SIGPIPE does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        if _is_user_error(e):
            print(f"align {args.command}: error: {_one_line(e)}", file=sys.stderr)
            return 2
        import traceback

        traceback.print_exc()
        print(f"align {args.command}: internal error: this is a bug in align, not in your input; please report it "
              f"with the traceback above (align {_version()})", file=sys.stderr)
        return 1


def _version() -> str:
    from align._version import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
