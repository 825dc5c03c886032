"""The findings of issue 5 and the depth asymmetry, each decided from the results tables by its definition
(``finding_defs.FINDINGS``: claim, table and quantity read, deciding metric, criterion), and the report.

Linear predictivity (the paper's metric; both directions) decides findings 1-6, with linear CKA reported beside
it; finding 7 rests on per-item ridge correlations and finding 8 on linear-CKA grids resampled over stimuli.
A finding "holds" when its criterion is met by at least 75% of the (model pair, direction) cases, "partly holds"
for 50-75%, and "does not hold" below; a finding with several conditions (5) takes the worst of theirs. A finding
whose table or quantity is missing says why instead of a number. The criteria were fixed before looking at the
data and are listed in the report's definitions table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

if str(Path(__file__).resolve().parent) not in sys.path:  # the sibling modules below, however this one is loaded
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from finding_defs import FINDINGS  # noqa: E402
from finding_defs import LP  # noqa: E402
from finding_defs import VERDICT_ORDER  # noqa: E402
from finding_defs import Finding  # noqa: E402
from finding_defs import NotComputed  # noqa: E402
from finding_defs import pair  # noqa: E402
from finding_defs import part_verdicts  # noqa: E402
from finding_defs import preference_rows  # noqa: E402
from finding_defs import verdict  # noqa: E402


def _fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float) and abs(v) < 1e-3 and v != 0:
        return f"{v:.1e}"
    return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v)


def _table(frame: pd.DataFrame) -> str:
    if frame is None or not len(frame):
        return "(no rows)\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _read(path: Path):
    from align.results import read_results

    return read_results(path) if path.exists() else None


def decide(finding: Finding, results: Path, *, n_boot: int = 200, seed: int = 0, ci: float = 0.95) -> dict:
    """Decide one finding from the tables under ``results``.

    Args:
      finding: its definition.
      results: the results folder (``results/paper``: one subfolder per experiment, plus ``activations/``).
      n_boot, seed, ci: resamples, seed and coverage of the depth-asymmetry bootstrap (finding 8).

    Returns:
      ``{"verdict", "statistic", "rows"}``: "not computed" with the reason as the statistic when the table or the
      quantity is missing (``rows`` then None or the cases found).
    """
    table = _read(results / finding.source)
    if table is None:
        return {"verdict": "not computed", "rows": None,
                "statistic": f"not computed: {finding.source} is missing (the "
                             f"{finding.source.split('/')[0]} experiment has not run)"}
    try:
        rows = finding.rows(table, {"results": results, "n_boot": n_boot, "seed": seed, "ci": ci})
    except NotComputed as e:
        return {"verdict": "not computed", "rows": None, "statistic": f"not computed: {e}"}
    deciding = rows[rows.metric == finding.metric] if finding.metric and "metric" in rows else rows
    if finding.parts:
        deciding = deciding[deciding.condition.str.startswith(finding.parts)]
    if not len(deciding):
        return {"verdict": "not computed", "rows": rows if len(rows) else None,
                "statistic": f"not computed: {finding.missing}"}
    verdicts = part_verdicts(deciding, finding.parts) if finding.parts else [verdict(deciding.holds)]
    return {"verdict": min(verdicts, key=VERDICT_ORDER.index), "rows": rows,
            "statistic": finding.summary(deciding, rows)}


def finding(number: int, results: Path, **options) -> dict:
    """Decide the finding with id ``number`` (see :func:`decide`; ``options``: n_boot, seed, ci)."""
    by_id = {d.id: d for d in FINDINGS}
    if number not in by_id:
        raise ValueError(f"no finding {number!r}; the findings are {sorted(by_id)}")
    return decide(by_id[number], Path(results), **options)


def _models(tables: list[pd.DataFrame], side: str) -> str:
    seen = {}
    for t in tables:
        if f"model_{side}" in t and f"pooling_{side}" in t:
            for m, p in zip(t[f"model_{side}"], t[f"pooling_{side}"]):
                seen.setdefault(m, {})[p] = None
    return ", ".join(f"{m} ({', '.join(str(p) for p in ps)})" for m, ps in seen.items()) or "none found"


def data_description(results: Path, *, coco: bool) -> str:
    """Which data, data sets, models and metrics the report rests on, read from the results tables."""
    tables = {}
    for f in sorted({d.source for d in FINDINGS}):
        t = _read(results / f)
        if t is not None:
            tables[f.split("/")[0]] = t
    datasets = "; ".join(f"{name}: {', '.join(sorted(t.dataset.dropna().astype(str).unique()))}"
                         for name, t in tables.items() if "dataset" in t)
    specs = sorted({m for t in tables.values() if "metric" in t for m in t.metric.dropna().unique()
                    if str(m).startswith(LP)})
    source = ("real MS-COCO images and captions (../shared/data/coco_captions_subset)" if coco
              else "SYNTHETIC scenes (the COCO folder was absent)")
    return (f"Data: {source}; data sets by experiment — {datasets or 'no results tables'}. Vision models: "
            f"{_models(list(tables.values()), 'x')}; language models: {_models(list(tables.values()), 'y')} "
            f"(pooling in brackets; read from the results tables). Linear predictivity "
            f"({', '.join(f'`{s}`' for s in specs) or 'not in the tables'}) decides findings 1-6; linear CKA is "
            f"shown beside it.")


def definitions_table() -> str:
    """The definitions as a Markdown table: id, claim, table and quantity read, deciding metric, criterion."""
    lines = ["| finding | claim | reads | metric | holds (per case) when |", "|---|---|---|---|---|"]
    for d in FINDINGS:
        lines.append(f"| {d.id} | {d.claim} | `{d.source}`: {d.quantity} | {d.metric or 'per-item ridge r'} | "
                     f"{d.criterion} |")
    return "\n".join(lines)


def write_report(results: Path, figures: Path, drawn: dict, history: list, *, coco: bool, n_boot: int = 200,
                 seed: int = 0) -> Path:
    """Decide every finding of ``FINDINGS`` from the tables under ``results`` and write ``figures/REPORT.md``.

    Args:
      results: the results folder of `make figures` (``results/paper``).
      figures: where the figures are and the report goes.
      drawn: figure module name -> paths it drew.
      history: wall-time records of earlier runs (newest last).
      coco: whether the data are the real COCO subset (else the synthetic fallback).
      n_boot, seed: resamples and seed of the depth-asymmetry bootstrap (computed once from the layerwise stores
        and kept in ``layerwise/peak_depth_bootstrap.parquet``).

    Returns:
      The report's path.
    """
    decided = [(f"({d.id}) {d.claim}", decide(d, results, n_boot=n_boot, seed=seed)) for d in FINDINGS]
    lines = ["# align — the paper's findings on this data", ""]
    lines.append("Generated by `make figures` (paper_figures/make_figures.py) from the results tables under "
                 f"results/paper/. {data_description(results, coco=coco)}")
    lines += ["", "Definitions (paper_figures/finding_defs.py; fixed before looking at the data). A finding holds "
              "when at least 75% of its cases meet the criterion, partly holds for 50-75%.", "", definitions_table(),
              "", "## Summary", "", "| finding | verdict | statistic |", "|---|---|---|"]
    for title, d in decided:
        lines.append(f"| {title} | **{d['verdict']}** | {d['statistic']} |")
    for title, d in decided:
        lines += ["", f"## {title}", "", f"**{d['verdict']}** — {d['statistic']}", ""]
        if d["rows"] is not None:
            lines.append(_table(d["rows"]))
    for contrast, name in (("wrong_caption", "preference_synthetic"), ("preferred", "preference_pickapic"),
                           ("scored", "preference_coco")):
        table = _read(results / name / "results.parquet")
        label = {"wrong_caption": "Correct vs one-attribute-wrong caption (synthetic scenes)",
                 "preferred": "Preferred vs rejected image (Pick-a-Pic layout, generated: the preferred image "
                              "is the faithful rendering, the rejected one has one attribute wrong)",
                 "scored": "High vs low scored captions (COCO)"}[contrast]
        if table is not None and "contrast" in table.columns and (table.contrast == contrast).any():
            rows = preference_rows(table, contrast)
            lines += ["", f"## Further contrast: {label}", "",
                      f"accuracy {rows.accuracy.min():.3f}–{rows.accuracy.max():.3f}, "
                      f"{int(rows.holds.sum())} of {len(rows)} significantly above chance", "", _table(rows)]
        elif contrast == "scored":  # said, not omitted: the code path exists, the data lack what it needs
            lines += ["", f"## Further contrast: {label}", "",
                      "not run — the data carry no score column (a per-caption score such as a CLIP score, named "
                      "by `stimuli.caption_score`; the `scored` preference contrast compares each image's highest- "
                      "and lowest-scored caption)"]
    agg_images = _read(results / "aggregation_images" / "results.parquet")
    if agg_images is not None and "quantity" in agg_images and (agg_images.quantity == "peak_difference").any():
        peak = agg_images[(agg_images.quantity == "peak_difference") & (agg_images.k == agg_images.k.max())]
        rows = pd.DataFrame({"model pair": pair(peak), "metric": peak.metric.str.split("(").str[0],
                             "direction": peak.direction, "control": peak.control, "k=1": peak.score_b,
                             f"k={int(peak.k.max())}": peak.score_a, "gain": peak.score, "p": peak.p_value})
        lines += ["", "## Further: averaging renderings of a synthetic scene (image aggregation)", "", _table(rows)]
    normalised = results / "layerwise" / "normalised.parquet"  # layerwise.toml: ceiling = true
    if normalised.exists():
        from fig_layerwise import ceiling_rows

        ceiling = pd.read_parquet(results / "layerwise" / "ceiling.parquet")
        spans = ", ".join(f"{model} {metric.split('(')[0]} {direction} {g.ceiling.min():.3f}–{g.ceiling.max():.3f}"
                          for (model, metric, direction), g in ceiling.groupby(["model", "metric", "direction"]))
        lines += ["", "## Caption noise ceiling (layerwise)", "",
                  f"Caption 0 vs caption 1 of the same {int(ceiling.n.iloc[0])} images, same language model and layer "
                  f"({int(ceiling.n_boot.iloc[0])} bootstrap resamples of the images). Ceiling over layers: {spans}. "
                  "At each peak layer pair, the score as a fraction of its language layer's ceiling (interval: the "
                  "ceiling's interval carried through the division; figure layerwise_ceiling.png):", "",
                  _table(ceiling_rows(pd.read_parquet(normalised)))]
    exclusions = results / "perturbation" / "exclusions.json"
    if exclusions.exists():
        lines += ["", "## Exclusions (perturbation)", ""]
        for step, report in json.loads(exclusions.read_text()).items():
            counts = {k: len(v) for k, v in report.get("excluded", {}).items()}
            removed = {k: len(v) for k, v in report.get("removed_captions", {}).items()}
            lines.append(f"- {step}: kept {report['n_out']} of {report['n_in']} images; excluded {counts or 'none'}; "
                         f"captions removed {removed or 'none'}")
    robust = results.parent / "robustness" / "ROBUSTNESS.md"  # `make robustness` (paper_figures/robustness.py)
    lines += ["", "## Robustness to the method choices", ""]
    if robust.exists():
        text = robust.read_text().split("\n", 1)[1]  # its own title replaced by this section's
        lines += [f"From `make robustness` ({robust}; specification curves beside it):", "",
                  text.replace("\n## ", "\n### ")]
    else:
        lines.append("not run: `make robustness` decides every finding under every combination of pooling, "
                     "preprocessing, metric and caption choice")
    lines += ["", "## Figures", ""]
    for module, paths in drawn.items():
        for p in paths:
            p = Path(p)
            if p.parent == figures:
                lines.append(f"![{p.stem}]({p.name})")
    n_heat = sum(1 for paths in drawn.values() for p in paths if "heatmaps" in str(p))
    lines.append(f"\nLayer x layer heatmaps ({n_heat}): layerwise/heatmaps/")
    keys = [k for k in dict.fromkeys(k for h in history for k in h) if k not in ("when", "figures_only", "note")]
    lines += ["", "## Wall times (seconds)", "", "| run | " + " | ".join(keys) + " | note |",
              "|---|" + "---|" * (len(keys) + 1)]
    for h in history[-8:]:
        note = h.get("note", "figures only" if h.get("figures_only") else "")
        lines.append(f"| {h['when']} | " + " | ".join(_fmt(float(h.get(k, np.nan)), 0) for k in keys) + f" | {note} |")
    path = figures / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
