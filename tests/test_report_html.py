"""The interactive HTML report (align.report, `align report RUN_DIR`), checked in a real headless browser: Debian's
chromium driven by Selenium. `make setup` installs chromium and chromium-driver; without them these tests fail."""

import html
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import align
from align.cli import main
from align.report import write_html_report
from align.results import read_results
from align.results import write_results

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SELECTORS = ("metric", "direction", "pair", "setting")
pytestmark = pytest.mark.xdist_group("browser")  # one worker, one browser (make test: --dist loadgroup)


def _layers(rng, n, widths, shared, depth_names):
    """Planted layers: layer k holds a growing share of the signal ``shared`` [n, 4] plus noise."""
    out = {}
    for k, (name, width) in enumerate(zip(depth_names, widths)):
        mix = rng.normal(size=(shared.shape[1], width))
        weight = k / max(len(widths) - 1, 1)
        out[name] = weight * shared @ mix + (1.2 - weight) * rng.normal(size=(n, width))
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder whose results.parquet holds 3 x 4 layer grids of three metrics (CKA with p and CI; Procrustes
    angular distance; RSA, signed) under two preprocessings, scored by align.pairwise on planted data."""
    rng = np.random.default_rng(3)
    n = 40
    shared = rng.normal(size=(n, 4))
    xs = _layers(rng, n, (8, 8, 8), shared, ("embeddings", "block_1", "block_2"))
    ys = _layers(rng, n, (6, 6, 6, 6), shared, ("embed_tokens", "layer_1", "layer_2", "layer_3"))
    frames = []
    for metric, options in (("linear_cka", {"n_perm": 20, "n_boot": 20}), ("procrustes_angular", {}), ("rsa", {})):
        for preprocess in ("none", "zscore"):
            frame = align.pairwise(metric, xs, ys, preprocess=preprocess, **options).to_frame()
            frames.append(frame.assign(experiment="layerwise", dataset="planted-n40", condition="original",
                                       model_x="vis-a", pooling_x="cls", model_y="lang-b", pooling_y="mean",
                                       config_fingerprint="f00dfeed12345678", version=align.__version__))
    folder = tmp_path_factory.mktemp("run")
    write_results(pd.concat(frames, ignore_index=True), folder / "results.parquet")
    (folder / "config.toml").write_text('name = "planted"\noutput = "planted"\n')
    (folder / "timings.json").write_text(json.dumps({"score": 1.5, "plot": 0.25}))
    from PIL import Image

    Image.new("RGB", (37, 21), (200, 30, 30)).save(folder / "figure.png")
    (folder / "NOTES.md").write_text("# Findings\n\nThe **first** finding holds.\n\n| finding | verdict |\n|---|---|\n"
                                     "| depth | holds |\n| size | fails |\n\n- one\n- two\n\n![red](figure.png)\n")
    return folder


@pytest.fixture(scope="module")
def page(run_dir):
    """(driver, report path, table) with the report open in headless chromium, browser logs recorded."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(f"{CHROMIUM} or {CHROMEDRIVER} is missing: run `make setup` (it installs Debian's chromium and "
                    f"chromium-driver with apt-get), then rerun the tests")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        report = write_html_report(run_dir, notes=run_dir / "NOTES.md")
        driver.get(report.as_uri())
        driver.set_script_timeout(30)
        driver.execute_async_script("var done = arguments[0]; (function wait() { var p = document.getElementById("
                                    "'heatmap'); if (p && p.data && p._fullLayout) done(); else setTimeout(wait, 50); })();")
        yield driver, report, read_results(run_dir / "results.parquet")
    finally:
        driver.quit()


def _shown(driver) -> tuple[dict, np.ndarray]:
    """The selectors' values and the z matrix the page draws (NaN where undefined)."""
    keys = {s: driver.execute_script(f"return document.getElementById('select-{s}').value") for s in SELECTORS}
    z = driver.execute_script("return document.getElementById('heatmap').data[0].z")
    return keys, np.array([[np.nan if v is None else v for v in row] for row in z], dtype=float)


def _rows_of(table: pd.DataFrame, keys: dict) -> pd.DataFrame:
    """The table's rows of the heatmap that the selectors name (the oracle: a plain pandas filter)."""
    preprocess = re.search(r"preprocess (\w+)", keys["setting"]).group(1)
    return table[(table.metric == keys["metric"]) & (table.direction == keys["direction"])
                 & (table.preprocess == preprocess)]


def _matrix(rows: pd.DataFrame) -> np.ndarray:
    return rows.pivot(index="layer_x", columns="layer_y", values="score").sort_index().sort_index(axis=1).to_numpy()


def test_page_loads_without_console_errors_and_is_self_contained(page):
    driver, report, _ = page
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
    text = report.read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=", text)  # plotly.js is inline
    # nothing was fetched: no script, style, font or image from the network or the disk
    assert driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == []
    assert driver.execute_script("return typeof Plotly.react") == "function"
    assert driver.execute_script("return document.querySelectorAll('#select-metric option').length") == 3


def test_selector_changes_the_heatmap_to_the_selected_rows(page):
    driver, _, table = page
    keys, z = _shown(driver)
    np.testing.assert_allclose(z, _matrix(_rows_of(table, keys)), rtol=0, atol=1e-12)
    for metric in ("procrustes_angular", "rsa", "linear_cka"):
        driver.execute_script("var s = document.getElementById('select-metric'); s.value = arguments[0];"
                              "s.dispatchEvent(new Event('change'));", metric)
        now, z_now = _shown(driver)
        assert now["metric"] == metric
        np.testing.assert_allclose(z_now, _matrix(_rows_of(table, now)), rtol=0, atol=1e-12)
        if metric != keys["metric"]:
            assert not np.allclose(z_now, z, equal_nan=True)
    zscore = now["setting"].replace("preprocess none", "preprocess zscore")
    driver.execute_script("var s = document.getElementById('select-setting'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('change'));", zscore)
    now, z_now = _shown(driver)
    assert now["setting"] == "preprocess zscore"
    np.testing.assert_allclose(z_now, _matrix(_rows_of(table, now)), rtol=0, atol=1e-12)


def test_signed_scores_get_a_diverging_scale_centred_on_zero(page):
    driver, _, table = page
    assert (table[table.metric == "rsa"].score < 0).any()  # the planted RSA grid has signed scores
    scales = {}
    for metric in ("rsa", "linear_cka"):
        driver.execute_script("var s = document.getElementById('select-metric'); s.value = arguments[0];"
                              "s.dispatchEvent(new Event('change'));", metric)
        scales[metric] = driver.execute_script(
            "var p = document.getElementById('heatmap'), t = p.data[0], f = p._fullData[0];"
            "var mid = t.colorscale.filter(function (c) { return c[0] === 0.5; });"
            "return {zmid: t.zmid === undefined ? null : t.zmid, zmin: f.zmin, zmax: f.zmax,"
            "        mid: mid.length ? mid[0][1] : null};")
    rsa, cka = scales["rsa"], scales["linear_cka"]
    assert rsa["zmid"] == 0 and rsa["zmin"] == pytest.approx(-rsa["zmax"])  # the colour range is centred on 0
    assert min(int(v) for v in re.findall(r"\d+", rsa["mid"])) > 230  # ... where the colour is near white
    assert cka["zmid"] is None and cka["zmin"] > 0  # unsigned CKA: a sequential scale
    # one colour range per metric and direction, over every heatmap of it (both preprocessings here)
    assert rsa["zmax"] == pytest.approx(table[table.metric == "rsa"].score.abs().max())
    cka_scores = table[table.metric == "linear_cka"].score
    assert [cka["zmin"], cka["zmax"]] == pytest.approx([cka_scores.min(), cka_scores.max()])


def test_hover_shows_the_cell_layers_score_ci_and_p(page):
    driver, _, table = page
    driver.execute_script("var s = document.getElementById('select-metric'); s.value = 'linear_cka';"
                          "s.dispatchEvent(new Event('change'));")
    keys, _ = _shown(driver)
    row = _rows_of(table, keys).set_index(["layer_x", "layer_y"]).loc[(2, 1)]
    label = driver.execute_script("var p = document.getElementById('heatmap');"
                                  "Plotly.Fx.hover(p, {xval: 1, yval: 2}, 'xy');"  # column 1 (lang-b), row 2 (vis-a)
                                  "var t = document.querySelector('.hoverlayer .hovertext');"
                                  "return t ? t.textContent : null;")
    assert label is not None
    assert "vis-a: block_2 (layer 2, depth 1.00)" in label and "lang-b: layer_1 (layer 1, depth 0.33)" in label
    shown = float(re.search(r"score (-?\d+\.\d+)", label).group(1))
    assert abs(shown - row.score) <= 5e-5
    low, high = (float(v) for v in re.search(r"CI \[(-?\d+\.\d+), (-?\d+\.\d+)\]", label).groups())
    assert abs(low - row.ci_low) <= 5e-5 and abs(high - row.ci_high) <= 5e-5
    assert f"p = {row.p_value:.4g}" in label


def test_best_pairs_table_is_direction_aware(page):
    driver, _, table = page
    cells = driver.execute_script("return Array.from(document.querySelectorAll('#best-pairs tbody tr')).map("
                                  "function (tr) { return Array.from(tr.cells).map(function (c) { return c.textContent; }); });")
    assert len(cells) == 6  # 3 metrics x 2 preprocessings
    for metric, pick in (("procrustes_angular", min), ("linear_cka", max), ("rsa", max)):
        for preprocess in ("none", "zscore"):
            rows = table[(table.metric == metric) & (table.preprocess == preprocess)]
            shown = [c for c in cells if c[4].startswith(metric) and c[6].endswith(f"preprocess {preprocess}")]
            assert len(shown) == 1 and float(shown[0][7]) == pytest.approx(pick(rows.score), abs=5e-5)
    save_to = os.environ.get("ALIGN_REPORT_SCREENSHOT")
    if save_to:  # a picture of the page, for people (e.g. ALIGN_REPORT_SCREENSHOT=/tmp/report.png)
        driver.save_screenshot(save_to)


def test_page_shows_config_provenance_and_timings(page, run_dir):
    driver, _, _ = page
    body = driver.execute_script("return document.body.innerText")
    assert 'name = "planted"' in body and '"score": 1.5' in body
    assert '"config_fingerprint": "f00dfeed12345678"' in body and '"dataset": "planted-n40"' in body
    assert str(run_dir / "results.parquet") in body and f"version\": \"{align.__version__}" in body


def test_cli_report_writes_the_page_and_prints_its_path(run_dir, tmp_path, capsys):
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 1_000_000
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["report", str(copy)]) == 0
    assert capsys.readouterr().out.strip() == str(copy / "report.html") and (copy / "report.html").is_file()


def test_cli_report_of_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "align report: error:" in err and "results.parquet" in err and str(tmp_path) in err


@pytest.mark.slow
def test_layerwise_run_writes_the_report(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    import _extract_tiny as tiny
    from align.config import parse_config
    from align.experiments import run

    tmp_path = tmp_path_factory.mktemp("m")  # short: heatmap file names hold both model paths
    tiny.vision_model(tmp_path / "vision", "dinov2")
    tiny.language_model(tmp_path / "language", "bert")
    cfg = parse_config({
        "name": "tiny", "output": str(tmp_path / "out" / "tiny"), "stimuli": {"kind": "synthetic", "n": 12},
        "models": [{"name": str(tmp_path / "vision"), "modality": "vision", "pooling": ["cls"]},
                   {"name": str(tmp_path / "language"), "modality": "language", "pooling": ["mean"]}],
        "extract": {"batch_size": 6}, "score": {"metrics": ["linear_cka"]}})
    outputs = run(cfg, progress=False, log=lambda msg: None)
    page = html.unescape((tmp_path / "out" / "tiny" / "report.html").read_text())
    assert outputs.results is not None and '"heatmaps": [{"key"' in page
    assert '"name": "tiny"' in page and "Timings" in page  # from the run's config.json and timings.json
    saved = json.loads((tmp_path / "out" / "tiny" / "timings.json").read_text())
    assert set(saved) >= {"extract", "score", "plot"} and outputs.report == tmp_path / "out" / "tiny" / "report.html"


def test_notes_markdown_is_rendered_with_its_image_embedded(page):
    driver, _, _ = page
    notes = driver.execute_script(
        "var n = document.querySelector('.notes'), img = n.querySelector('img');"
        "return {h1: n.querySelector('h1').textContent, strong: n.querySelector('strong').textContent,"
        "        cells: Array.from(n.querySelectorAll('tbody td')).map(function (c) { return c.textContent; }),"
        "        items: n.querySelectorAll('li').length, src: img.src.slice(0, 22), w: img.naturalWidth,"
        "        h: img.naturalHeight};")
    assert notes == {"h1": "Findings", "strong": "first", "cells": ["depth", "holds", "size", "fails"], "items": 2,
                     "src": "data:image/png;base64,", "w": 37, "h": 21}
