"""Heatmaps: the peak marker honours the metric's direction, non-significant cells are hatched, panels share one
colour scale (diverging about zero for signed scores), files are written in every format, and the config's
[plot] settings reach the figures. All on planted tables (no models)."""

import xml.etree.ElementTree as ET

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from PIL import Image  # noqa: E402

from align.plots import colour_scale, plot_all_pairs, plot_layer_heatmap, save_heatmaps  # noqa: E402

RNG = np.random.default_rng(7)


def _table(scores, *, metric="linear_cka", model_y="lang", higher=None, **grids) -> pd.DataFrame:
    """Results rows of one heatmap: ``scores[i, j]`` at layer_x i, layer_y j; ``grids`` are further per-cell
    columns (e.g. p_bh)."""
    scores = np.asarray(scores, dtype=float)
    nx, ny = scores.shape
    lx, ly = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    frame = pd.DataFrame({"experiment": "layerwise", "dataset": "d", "condition": "original|original",
                          "model_x": "vis", "pooling_x": "cls", "model_y": model_y, "pooling_y": "mean",
                          "metric": metric, "direction": "symmetric", "preprocess": "zscore",
                          "layer_x": lx.ravel(), "layer_y": ly.ravel(), "score": scores.ravel(), "n": 64})
    if higher is not None:
        frame["higher_is_more_aligned"] = higher
    for name, grid in grids.items():
        frame[name] = np.asarray(grid, dtype=float).ravel()
    return frame


def _peak_marker(ax):
    (marker,) = [line for line in ax.lines if line.get_gid() == "peak"]
    return int(marker.get_ydata()[0]), int(marker.get_xdata()[0])  # (layer_x, layer_y): rows are y on screen


def _hatched_cells(ax) -> set[tuple[int, int]]:
    cells = set()
    for patch in ax.patches:
        if patch.get_hatch():
            x, y = patch.get_xy()
            cells.add((int(round(y + 0.5)), int(round(x + 0.5))))
    return cells


@pytest.mark.parametrize("metric, higher", [("procrustes_angular", False), ("linear_cka", True)])
def test_peak_marker_sits_on_the_most_aligned_cell(metric, higher):
    scores = RNG.uniform(0.2, 0.8, size=(5, 7))
    scores[3, 1], scores[0, 5] = 0.05, 0.95  # planted minimum and maximum
    fig, ax = plot_layer_heatmap(_table(scores, metric=metric))
    want = np.unravel_index(np.argmax(scores) if higher else np.argmin(scores), scores.shape)
    assert _peak_marker(ax) == tuple(int(w) for w in want) == ((0, 5) if higher else (3, 1))
    assert ("lowest" if not higher else "highest") in ax.get_title()
    plt.close(fig)


def test_peak_follows_the_rows_direction_column_over_the_metric_name():
    scores = RNG.uniform(0.2, 0.8, size=(4, 4))
    scores[2, 3] = 0.01
    fig, ax = plot_layer_heatmap(_table(scores, metric="my_probe", higher=False))  # an unregistered distance
    assert _peak_marker(ax) == (2, 3)
    assert fig.axes[-1].get_ylabel() == "my probe (lower = more aligned)"
    plt.close(fig)


@pytest.mark.parametrize("correction, column", [("bh", "p_bh"), ("maxstat", "p_maxstat")])
def test_hatching_covers_exactly_the_non_significant_cells(correction, column):
    scores = RNG.uniform(0.1, 0.9, size=(6, 5))
    p_bh = RNG.uniform(0.0, 0.12, size=scores.shape)
    p_bh[1, 1] = np.nan  # no p-value: not hatched
    p_maxstat = RNG.uniform(0.0, 0.2, size=scores.shape)
    table = _table(scores, p_bh=p_bh, p_maxstat=p_maxstat)
    fig, ax = plot_layer_heatmap(table, correction=correction)
    p = {"p_bh": p_bh, "p_maxstat": p_maxstat}[column]
    want = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.nan_to_num(p, nan=0.0) >= 0.05))}
    assert 0 < len(want) < scores.size - 1
    assert _hatched_cells(ax) == want
    assert column in ax.get_title()
    assert ("Benjamini-Hochberg" if correction == "bh" else "family-wise") in ax.get_title()
    plt.close(fig)


def test_no_hatching_without_p_values_or_with_correction_none():
    scores = RNG.uniform(size=(3, 3))
    for table, correction in ((_table(scores), "bh"), (_table(scores, p_bh=np.ones((3, 3))), None)):
        fig, ax = plot_layer_heatmap(table, correction=correction)
        assert _hatched_cells(ax) == set() and "hatched" not in ax.get_title()
        plt.close(fig)


def test_all_pairs_panels_share_one_colour_range_per_metric():
    low = RNG.uniform(0.1, 0.3, size=(4, 3))
    high = RNG.uniform(0.6, 0.9, size=(4, 5))
    dist = RNG.uniform(1.0, 2.0, size=(4, 3))
    table = pd.concat([_table(low, model_y="a"), _table(high, model_y="b"),
                       _table(dist, metric="procrustes_angular", model_y="a")])
    fig, axes = plot_all_pairs(table)
    assert axes.shape == (2, 2)  # rows: linear_cka, procrustes_angular; columns: pairs (vis, a), (vis, b)
    cka = [ax.images[0].norm for ax in axes[0]]
    assert cka[0].vmin == cka[1].vmin == pytest.approx(min(low.min(), high.min()))
    assert cka[0].vmax == cka[1].vmax == pytest.approx(max(low.max(), high.max()))
    assert axes[1, 0].images[0].norm.vmax == pytest.approx(dist.max())
    assert not axes[1, 1].axison  # no procrustes rows for pair (vis, b): blank panel
    labels = [ax.get_ylabel() for ax in fig.axes if ax not in axes.ravel()]  # colour bars
    assert any(label.startswith("procrustes angular (lower = more aligned)") and "n = 64" in label
               for label in labels)
    plt.close(fig)
    fig, axes = plot_all_pairs(table, vmin=-1.0, vmax=3.0, cmap="magma")
    assert {(ax.images[0].norm.vmin, ax.images[0].norm.vmax, ax.images[0].get_cmap().name)
            for ax in axes.ravel() if ax.images} == {(-1.0, 3.0, "magma")}
    plt.close(fig)


def test_signed_scores_get_a_diverging_map_centred_on_zero():
    signed = RNG.uniform(-0.3, 0.7, size=(4, 4))
    fig, ax = plot_layer_heatmap(_table(signed, metric="rsa"))
    norm = ax.images[0].norm
    assert isinstance(norm, TwoSlopeNorm) and norm.vcenter == 0.0 and norm(0.0) == pytest.approx(0.5)
    assert norm.vmin == pytest.approx(-np.abs(signed).max()) and norm.vmax == pytest.approx(np.abs(signed).max())
    assert ax.images[0].get_cmap().name == "RdBu_r"
    plt.close(fig)
    positive = RNG.uniform(0.1, 0.7, size=(4, 4))
    fig, ax = plot_layer_heatmap(_table(positive))
    assert not isinstance(ax.images[0].norm, TwoSlopeNorm) and ax.images[0].get_cmap().name == "viridis"
    assert ax.images[0].norm.vmin == pytest.approx(positive.min())
    plt.close(fig)
    fig, ax = plot_layer_heatmap(_table(positive + 1, metric="procrustes_angular"))
    assert ax.images[0].get_cmap().name == "viridis_r"  # a distance: the brightest cell is still the most aligned
    plt.close(fig)


def test_colour_scale_limits_and_errors():
    scale = colour_scale([-0.2, 0.5], vmin=-0.1)  # one given limit: the other from the scores
    assert scale.diverging and scale.limits == (-0.1, 0.5)
    assert colour_scale([0.3, 0.3]).limits[0] < 0.3 < colour_scale([0.3, 0.3]).limits[1]  # constant scores
    with pytest.raises(ValueError, match="vmin = 1.0 must be below vmax = 0.5"):
        colour_scale([0.1], vmin=1.0, vmax=0.5)
    with pytest.raises(ValueError, match="'no_such_map' is not a matplotlib colour map"):
        colour_scale([0.1], cmap="no_such_map")
    with pytest.raises(ValueError, match="correction = 'fdr'"):
        plot_layer_heatmap(_table(np.ones((2, 2)), p_bh=np.ones((2, 2))), correction="fdr")
    with pytest.raises(ValueError, match=r"heatmap formats \['eps'\]"):
        save_heatmaps(_table(np.ones((2, 2))), "unused", formats=("eps",))


def test_every_format_is_written_valid_and_kept_when_current(tmp_path):
    table = pd.concat([_table(RNG.uniform(size=(3, 4)), model_y="a"), _table(RNG.uniform(size=(3, 4)), model_y="b")])
    paths = save_heatmaps(table, tmp_path, dpi=40, formats=("png", "pdf", "svg"), all_pairs=True)
    assert sorted(p.suffix for p in paths) == [".pdf"] * 3 + [".png"] * 3 + [".svg"] * 3
    assert {p.name for p in paths if p.stem == "all_pairs"} == {"all_pairs.png", "all_pairs.pdf", "all_pairs.svg"}
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".pdf":
            assert data.startswith(b"%PDF") and b"%%EOF" in data[-64:]
        elif path.suffix == ".svg":
            assert ET.fromstring(data).tag.endswith("svg")
        else:
            with Image.open(path) as image:
                image.load()
    assert len(list(tmp_path.glob("*.csv"))) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in paths}
    assert save_heatmaps(table, tmp_path, dpi=40, formats=("png", "pdf", "svg"), all_pairs=True) == paths
    assert {p: p.stat().st_mtime_ns for p in paths} == mtimes  # unchanged rows and settings: nothing redrawn
    (svg,) = [p for p in save_heatmaps(table, tmp_path, dpi=40, formats=("svg",), cmap="magma", remove_stale=True)
              if "__a__" in p.name]
    assert svg.stat().st_mtime_ns != mtimes[svg]  # another colour map: redrawn
    assert {p.suffix for p in tmp_path.iterdir() if not p.name.startswith(".")} == {".svg", ".csv"}


def test_config_plot_settings_reach_align_plot(tmp_path, monkeypatch):
    from align.cli import main
    from align.results import write_results

    out = tmp_path / "run"
    table = pd.concat([_table(RNG.uniform(-0.5, 0.5, size=(3, 3)), model_y="a"),
                       _table(RNG.uniform(0.0, 0.5, size=(3, 3)), model_y="b")])
    write_results(table, out / "results.parquet")
    config = tmp_path / "run.toml"
    config.write_text(f'name = "t"\noutput = "{out}"\n[[models]]\nname = "a"\n[[models]]\nname = "b"\n'
                      '[plot]\nformats = ["png", "svg"]\nvmin = -2.0\nvmax = 0.75\ncmap = "magma"\n')
    drawn = []
    save = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        drawn.extend((im.norm.vmin, im.norm.vmax, im.get_cmap().name) for ax in fig.axes for im in ax.images)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    assert main(["plot", str(config)]) == 0
    names = sorted(p.name for p in (out / "heatmaps").iterdir())
    assert [n for n in names if n.startswith("all_pairs")] == ["all_pairs.png", "all_pairs.svg"]
    assert sum(n.endswith(".svg") for n in names) == 3 and sum(n.endswith(".png") for n in names) == 3
    assert drawn and set(drawn) == {(-2.0, 0.75, "magma")}


def test_models_given_as_long_paths_get_short_distinct_file_names(tmp_path):
    deep = "/tmp/" + "a-very-long-folder-name/" * 12
    table = pd.concat([_table(RNG.uniform(size=(2, 3)), model_y=deep + "lang_one"),
                       _table(RNG.uniform(size=(2, 3)), model_y=deep + "lang_two")])
    paths = save_heatmaps(table, tmp_path, dpi=30)
    assert len({p.name for p in paths}) == 2 and all(len(p.name) < 200 and p.exists() for p in paths)
    assert all(p.name.endswith("__preprocess=zscore.png") for p in paths)
