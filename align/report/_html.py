"""One self-contained, interactive HTML page per run: every heatmap of its results table, the best layer pairs, and
the run's config, provenance and timings (``align report RUN_DIR``).

The page needs no network: plotly.js is embedded inline, the heatmaps are embedded as JSON, and a few lines of plain
JavaScript draw the heatmap chosen by four selectors (metric, direction, model pair, setting) with ``Plotly.react``.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from align.report._figures import NUMBER
from align.report._figures import SELECTORS
from align.report._figures import heatmaps
from align.report._figures import selector_values
from align.report._figures import setting_columns
from align.report._markdown import markdown_html
from align.results import best_layer_pairs
from align.store import atomic_path
from align.results import read_results

_LABELS = {"metric": "metric", "direction": "direction", "pair": "model pair", "setting": "condition / preprocess"}

#: Files of a run folder shown as its config (the first present), provenance and timings.
CONFIG_FILES = ("config.toml", "config.json", "run.toml", "run.json")
PROVENANCE_FILES = ("provenance.json",)
TIMING_FILES = ("timings.json",)

_SCRIPT = """
(function () {
  var report = JSON.parse(document.getElementById("report-data").textContent);
  var names = report.selectors, selects = {};
  names.forEach(function (n) { selects[n] = document.getElementById("select-" + n); });
  function pick(changed) {  // the heatmap matching the most selectors, among those matching the one just changed
    var best = 0, most = -1;
    report.heatmaps.forEach(function (h, i) {
      if (changed && h.key[changed] !== selects[changed].value) return;
      var hits = names.filter(function (n) { return h.key[n] === selects[n].value; }).length;
      if (hits > most) { best = i; most = hits; }
    });
    return best;
  }
  function show(index) {
    var h = report.heatmaps[index];
    names.forEach(function (n) { selects[n].value = h.key[n]; });
    var plot = document.getElementById("heatmap");
    Plotly.react(plot, h.figure.data, h.figure.layout, {responsive: true, displaylogo: false});
    plot.setAttribute("data-index", String(index));
    document.querySelectorAll("#best-pairs tbody tr").forEach(function (tr) {
      tr.classList.toggle("current", tr.getAttribute("data-heatmap") === String(index));
    });
  }
  names.forEach(function (n) { selects[n].addEventListener("change", function () { show(pick(n)); }); });
  document.querySelectorAll("#best-pairs tbody tr").forEach(function (tr) {
    tr.addEventListener("click", function () { show(Number(tr.getAttribute("data-heatmap"))); });
  });
  show(0);
})();
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
.selectors label { margin-right: 1.2em; } .selectors select { max-width: 36em; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
th { background: #f0f0f0; } #best-pairs tbody tr { cursor: pointer; } tr.current { background: #fff3b0; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; white-space: pre-wrap; }
.note { color: #555; font-size: 0.9em; }
"""


def _json_for_script(value) -> str:
    """JSON safe inside a ``<script>`` element (no ``</`` sequences)."""
    return json.dumps(value, allow_nan=False).replace("</", "<\\/")


def _fmt(value) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else (
        NUMBER.format(value) if isinstance(value, float) else str(value))


def _best_table(frame: pd.DataFrame, keys: list[dict]) -> str:
    """The best layer pair of every heatmap (highest score; lowest where lower = more aligned), as HTML rows that
    select their heatmap when clicked."""
    best = best_layer_pairs(frame)
    varying = setting_columns(frame)
    head = ["model x", "layer x", "model y", "layer y", "metric", "direction", "setting", "score", "CI", "p"]
    rows = []
    for _, r in best.iterrows():
        key = selector_values(r, varying)
        index = keys.index(key) if key in keys else 0
        ci = (f"[{_fmt(float(r['ci_low']))}, {_fmt(float(r['ci_high']))}]"
              if pd.notna(r.get("ci_low", float("nan"))) and pd.notna(r.get("ci_high", float("nan"))) else "")
        p = f"{float(r['p_value']):.4g}" if pd.notna(r.get("p_value", float("nan"))) else ""
        better = "" if bool(r["higher_is_more_aligned"]) else " (lower = more aligned)"
        cells = [f"{r['model_x']} ({r.get('pooling_x')})", f"{r['layer_x']} {r.get('layer_name_x', '')} "
                 f"(depth {float(r['rel_depth_x']):.2f})", f"{r['model_y']} ({r.get('pooling_y')})",
                 f"{r['layer_y']} {r.get('layer_name_y', '')} (depth {float(r['rel_depth_y']):.2f})",
                 f"{r['metric']}{better}", str(r["direction"]), key["setting"],
                 _fmt(float(r["score"])), ci, p]
        rows.append(f'<tr data-heatmap="{index}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return ('<table id="best-pairs"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _read_first(folder: Path, names) -> tuple[str, str] | None:
    """(file name, text) of the first of ``names`` present in ``folder``."""
    for name in names:
        if (folder / name).is_file():
            return name, (folder / name).read_text()
    return None


def _pre(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    return f"<pre>{html.escape(text)}</pre>"


def _provenance(frame: pd.DataFrame, results: Path) -> dict:
    """What made the table: align versions, config fingerprints, experiments, datasets, n, rows, file time."""
    info = {"results table": str(results),
            "written": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(results.stat().st_mtime)),
            "rows": len(frame)}
    for column in ("experiment", "dataset", "version", "config_fingerprint", "n", "preprocess", "caption"):
        values = sorted(frame[column].dropna().unique(), key=str) if column in frame.columns else []
        if len(values):
            info[column] = ", ".join(str(v) for v in values)
    return info


def html_report(run_dir: str | Path, *, config: str | Mapping | None = None, timings: Mapping | None = None,
                title: str | None = None, notes: str | Path | None = None) -> str:
    """The HTML page of a run (see :func:`write_html_report`)."""
    import plotly.offline

    run_dir = Path(run_dir)
    results = run_dir / "results.parquet"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist; pass the output folder of `align run` (the "
                                f"config's `output`)")
    if not results.is_file():
        raise FileNotFoundError(f"{run_dir} has no results.parquet, so it is not a finished run folder; pass the "
                                f"output folder of `align run` (the config's `output`) after its score stage")
    frame = read_results(results)
    needed = [c for c in ("model_x", "model_y", "layer_x", "layer_y", "metric", "direction", "score",
                          "layer_name_x", "layer_name_y", "rel_depth_x", "rel_depth_y") if c not in frame.columns]
    if needed or not len(frame):
        raise ValueError(f"{results} is not a layer-grid results table (missing column(s) {needed}, "
                         f"{len(frame)} rows); `align report` draws the tables `align run` writes")
    maps = heatmaps(frame)
    keys = [h["key"] for h in maps]
    selectors = []
    for name in SELECTORS:
        options = sorted({k[name] for k in keys})
        choices = "".join(f'<option value="{html.escape(o)}">{html.escape(o)}</option>' for o in options)
        selectors.append(f'<label>{_LABELS[name]} <select id="select-{name}">{choices}</select></label>')
    found = _read_first(run_dir, CONFIG_FILES)
    if config is None and found is not None:
        config = found[1]
    provenance = _provenance(frame, results)
    extra = _read_first(run_dir, PROVENANCE_FILES)
    if extra is not None:
        provenance.update(json.loads(extra[1]))
    if timings is None and (found_timings := _read_first(run_dir, TIMING_FILES)) is not None:
        timings = json.loads(found_timings[1])
    title = title or f"align report: {run_dir.name}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{len(maps)} heatmap(s) from {html.escape(str(results))}; rows: layers of model x '
        f"(0 = embedding output), columns: layers of model y; the star marks the most aligned pair; grey: "
        f"undefined. Hover a cell for its layers, score, confidence interval and p-value.</p>",
        f'<div class="selectors">{"".join(selectors)}</div>', '<div id="heatmap"></div>',
        "<h2>Best layer pairs</h2><p class=\"note\">Highest score per heatmap; lowest for distances (lower = more "
        "aligned). Click a row to show its heatmap.</p>" + _best_table(frame, keys),
        "<h2>Config</h2>" + (_pre(config) if config is not None else
                             '<p class="note">no config in the run folder</p>'),
        "<h2>Provenance</h2>" + _pre(provenance),
    ]
    if timings:
        sections.append("<h2>Timings (seconds)</h2>" + _pre(timings))
    if notes:
        text, base = (notes.read_text(), notes.parent) if isinstance(notes, Path) else (notes, Path("."))
        sections.append('<div class="notes">' + markdown_html(text, base) + "</div>")
    data = {"selectors": list(SELECTORS), "heatmaps": maps}
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{plotly.offline.get_plotlyjs()}</script></head><body>\n" + "\n".join(sections)
            + f'\n<script type="application/json" id="report-data">{_json_for_script(data)}</script>'
            + f"\n<script>{_SCRIPT}</script>\n</body></html>\n")


def write_html_report(run_dir: str | Path, out: str | Path | None = None, *, config: str | Mapping | None = None,
                      timings: Mapping | None = None, title: str | None = None,
                      notes: str | Path | None = None) -> Path:
    """Write one self-contained interactive HTML page of a run: every heatmap of ``<run_dir>/results.parquet``
    (selected by metric, direction, model pair and condition/preprocess; hover gives layer names, relative depths,
    score, CI and p where computed), the best layer pairs (direction-aware: lowest score for distances), and the
    run's config, provenance and timings. No network is needed to view it (plotly.js is inline, ~5 MB).

    Args:
      run_dir: a run's output folder (holding ``results.parquet``).
      out: the HTML file (default ``<run_dir>/report.html``); written atomically.
      config: the run's config, as text (TOML) or a mapping (shown as JSON); default the first of
        ``CONFIG_FILES`` in ``run_dir``, if any.
      timings: seconds per stage; default ``<run_dir>/timings.json`` if present.
      title: the page title (default "align report: <run folder name>").
      notes: Markdown shown at the end of the page (the subset of ``align.report.markdown_html``): a file (its
        images, relative to its folder, are embedded) or text (images relative to the working directory).

    Returns:
      The path of the HTML file.

    Raises:
      FileNotFoundError: ``run_dir`` does not exist or has no ``results.parquet``.
      ValueError: the table is not a layer-grid results table (missing columns or no rows).
    """
    run_dir = Path(run_dir)
    page = html_report(run_dir, config=config, timings=timings, title=title, notes=notes)
    out = Path(out) if out is not None else run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
