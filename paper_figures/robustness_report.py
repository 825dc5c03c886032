"""The robustness report: tables of which finding holds under which method choice, and the specification curves.

Writes under the robustness output folder: ``cases.parquet`` (every case), ``specs.parquet`` (per finding and
specification), ``ROBUSTNESS.md`` and ``spec_curve_<finding>.png``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robustness import AXES
from robustness import REPO
from robustness import metric_tag
from robustness_eval import FINDINGS
from robustness_eval import all_cases
from robustness_eval import skip_table
from robustness_eval import spec_table

SHORT = {"linear_predictivity": "LP", "linear_cka": "CKA", "rsa": "RSA", "mutual_knn": "mkNN"}
#: Column labels of each choice value in the marginal table.
AXIS_LABEL = {"vision_pooling": "vision", "language_pooling": "language", "preprocess": "", "metric": "",
              "caption": "caption"}


def choice_columns(spec: dict) -> list[tuple[str, str, str]]:
    """``(axis, value, label)`` of every choice value, in the TOML's order."""
    ch = spec["choices"]
    values = {"vision_pooling": ch["vision_pooling"], "language_pooling": ch["language_pooling"],
              "preprocess": ch["preprocess"], "metric": [metric_tag(m) for m in ch["metrics"]],
              "caption": ch["caption"]}
    return [(axis, v, f"{AXIS_LABEL[axis]} {SHORT.get(v, v)}".strip()) for axis in AXES for v in values[axis]]


def marginal_table(specs: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Finding x choice value: "h/d" = specifications whose verdict is "holds" / specifications decided (verdict
    not "not computed") among those using that value; the first column counts all specifications."""
    rows = []
    for fid, label, claim in FINDINGS:
        g = specs[specs.finding == fid]
        row = {"finding": label}

        def count(part):
            decided = part[part.verdict != "not computed"]
            return f"{int((decided.verdict == 'holds').sum())}/{len(decided)}" if len(part) else "–"

        row["all"] = count(g)
        for axis, value, name in choice_columns(spec):
            row[name] = count(g[g[axis] == value])
        rows.append(row)
    return pd.DataFrame(rows)


def _md(frame: pd.DataFrame, digits: int = 3) -> str:
    if not len(frame):
        return "(none)\n"

    def fmt(v):
        if isinstance(v, float):
            return "–" if pd.isna(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_all(spec: dict, *, log=print) -> Path:
    """Decide every finding per specification and write the tables, the figures and ``ROBUSTNESS.md``."""
    import fig_robustness

    out = REPO / spec["output"]
    out.mkdir(parents=True, exist_ok=True)
    cases = all_cases(spec, log=log)
    specs = spec_table(cases)
    cases.to_parquet(out / "cases.parquet", index=False)
    specs.to_parquet(out / "specs.parquet", index=False)
    skips = skip_table(spec)
    figures = {fid: fig_robustness.draw(specs, cases, fid, label, spec, out / f"spec_curve_{fid}.png")
               for fid, label, _ in FINDINGS if (specs.finding == fid).any()}
    n_specs = len(cases.groupby(list(AXES)).size())
    lines = ["# Robustness: which findings hold under which method choices\n",
             f"{n_specs} specifications (vision pooling x language pooling x preprocessing x metric x caption); "
             f"models: vision {', '.join(spec['models']['vision'])}; language "
             f"{', '.join(spec['models']['language'])}. Each finding is decided per specification with its "
             "definition in the figures report (REPORT.md), the specification's metric deciding; a specification's "
             "verdict is \"holds\" when >= 75% of its cases (model pair x direction) meet the criterion. "
             "Effects: see `paper_figures/robustness_eval.py` (1: relative rise to the peak; 2: null mean; 3-5: "
             "relative change at the peak pair; 6: gain of 5 captions over 1; 7: forced-choice accuracy; 8: "
             "language − vision peak depth).\n",
             "## Specifications whose verdict is \"holds\", per choice (holding / decided)\n",
             _md(marginal_table(specs, spec)),
             "\n## Skipped poolings (not computable, never extracted)\n", _md(skips),
             "\n## Verdicts per finding\n"]
    for fid, label, claim in FINDINGS:
        g = specs[specs.finding == fid]
        if not len(g):
            lines.append(f"- **{label}** {claim}: no rows (its experiment did not run)\n")
            continue
        counts = g.verdict.value_counts()
        lines.append(f"- **{label}** {claim}: " + ", ".join(f"{k} {int(counts.get(k, 0))}" for k in
                                                           ("holds", "partly holds", "does not hold",
                                                            "not computed")) +
                     f" of {len(g)} specifications; median effect {g.effect.median():+.3f} (range "
                     f"{g.effect.min():+.3f} to {g.effect.max():+.3f})" +
                     (f"; figure `{figures[fid].name}`" if figures.get(fid) else "") + "\n")
    path = out / "ROBUSTNESS.md"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    log(f"robustness: {len(cases)} cases over {n_specs} specifications -> {path}")
    return path
