"""Interop: LayerGrid.to_xarray / summary, and store export to .npy / .h5 / .pt (round trips, values and ids)."""

import json

import numpy as np
import pytest

import align
from align.cli import main
from align.engine import LayerGrid
from align.results import grid_summary
from align.results import grid_to_xarray
from align.store import StoreWriter
from align.store import export_store
from align.store import open_store

xr = pytest.importorskip("xarray")

LX = ("embed", "block.0", "block.1", "block.2")
LY = ("tok", "layer.0", "layer.1")


def _grid(scores, *, higher=True, stats=None, directions=("symmetric",), **kwargs):
    return LayerGrid(metric="toy", kwargs={"k": 3}, layers_x=LX, layers_y=LY,
                     scores={d: np.asarray(s) for d, s in zip(directions, scores)}, n=37,
                     symmetric=directions == ("symmetric",), higher_is_more_aligned=higher, stats=stats or {},
                     preprocess="zscore", **kwargs)


def test_to_xarray_round_trips_scores_stats_and_labels():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    lo, hi = a - 0.1, a + 0.1
    p = rng.uniform(size=(4, 3))
    g = _grid([a, b], directions=("x_to_y", "y_to_x"), stats={"x_to_y": {"ci_low": lo, "ci_high": hi, "p_value": p}},
              n_perm=99, n_boot=50)
    ds = g.to_xarray()
    assert ds.sizes == {"layer_x": 4, "layer_y": 3}
    np.testing.assert_array_equal(ds["score_x_to_y"].values, a)
    np.testing.assert_array_equal(ds["score_y_to_x"].values, b)
    np.testing.assert_array_equal(ds["ci_low_x_to_y"].values, lo)
    np.testing.assert_array_equal(ds["p_value_x_to_y"].values, p)
    assert "p_value_y_to_x" not in ds
    assert list(ds["layer_x"].values) == list(LX) and list(ds["layer_y"].values) == list(LY)
    np.testing.assert_allclose(ds["rel_depth_x"].values, [0, 1 / 3, 2 / 3, 1])
    # a labelled selection picks the same cell as the array index
    assert float(ds["score_x_to_y"].sel(layer_x="block.1", layer_y="layer.0")) == a[2, 1]
    attrs = ds.attrs
    assert (attrs["metric"], attrs["n"], attrs["preprocess"], attrs["n_perm"], attrs["n_boot"]) == \
        ("toy", 37, "zscore", 99, 50)
    assert json.loads(attrs["kwargs"]) == {"k": 3} and attrs["higher_is_more_aligned"] == 1
    # the same as the module-level function
    assert grid_to_xarray(g).identical(ds)


def test_to_xarray_of_a_real_grid_writes_netcdf(tmp_path):
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(30, 5)) for _ in range(3)]
    ys = [rng.normal(size=(30, 4)) for _ in range(2)]
    g = align.pairwise("linear_cka", xs, ys, n_perm=20)
    ds = g.to_xarray()
    np.testing.assert_array_equal(ds["score_symmetric"].values, g.score())
    np.testing.assert_array_equal(ds["p_bh_symmetric"].values, g.stat("p_bh"))
    ds.to_netcdf(tmp_path / "grid.nc", engine="scipy")  # attrs are netCDF-safe types
    back = xr.open_dataset(tmp_path / "grid.nc", engine="scipy").load()
    np.testing.assert_allclose(back["score_symmetric"].values, g.score())
    assert back.attrs["metric"] == "linear_cka"


@pytest.mark.parametrize("higher", [True, False])
def test_summary_lists_the_planted_best_pair_first(higher):
    rng = np.random.default_rng(2)
    s = rng.uniform(0.2, 0.4, size=(4, 3))
    s[2, 1] = 0.9 if higher else 0.01  # the most aligned pair, whichever way scores point
    s[0, 0] = 0.01 if higher else 0.9  # the least aligned
    s[3, 2] = np.nan
    lo, hi = s - 0.05, s + 0.05
    pv = np.full((4, 3), 0.5)
    pv[2, 1] = 0.001
    g = _grid([s], higher=higher, stats={"symmetric": {"ci_low": lo, "ci_high": hi, "p_value": pv, "p_bh": pv * 2}},
              n_perm=999, n_boot=200)
    text = g.summary(top=3)
    assert text == grid_summary(g, top=3)
    pairs = [line for line in text.splitlines() if line.lstrip()[:2] in ("1.", "2.", "3.", "4.")]
    assert len(pairs) == 3
    assert "block.1" in pairs[0] and "layer.0" in pairs[0]
    assert f"{s[2, 1]:.4f}" in pairs[0] and f"[{lo[2, 1]:.4f}, {hi[2, 1]:.4f}]" in pairs[0]
    assert "p = 0.001" in pairs[0] and "p_bh = 0.002" in pairs[0]
    assert not any("embed " in line and "tok " in line for line in pairs)  # the worst pair is not listed
    assert ("higher = more aligned" if higher else "lower = more aligned") in text
    assert "n = 37" in text and "zscore" in text and "999 permutations" in text and "toy(k=3)" in text
    assert "nan" not in text.lower().split("top")[1]  # the NaN cell is skipped


def test_summary_ranks_each_direction_separately():
    a = np.zeros((4, 3))
    b = np.zeros((4, 3))
    a[1, 2], b[3, 0] = 1.0, 1.0
    text = _grid([a, b], directions=("x_to_y", "y_to_x")).summary(top=1)
    blocks = text.split("top 1 layer pairs, ")[1:]
    assert blocks[0].startswith("x_to_y") and "block.0" in blocks[0] and "layer.1" in blocks[0]
    assert blocks[1].startswith("y_to_x") and "block.2" in blocks[1] and "tok" in blocks[1]
    with pytest.raises(ValueError, match="top"):
        _grid([a]).summary(top=0)


# -- store export ---------------------------------------------------------------------------------------------------

IDS = [f"img{k:02d}" for k in range(9)]
NAMES = ["embeddings", "encoder/layer.0", "encoder.layer.1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(3)
    layers = [rng.normal(size=(len(IDS), d)).astype(np.float32) for d in (4, 6, 5)]
    path = tmp_path_factory.mktemp("store") / "s.parquet"
    w = StoreWriter(path, stimulus_ids=IDS, layer_names=NAMES, meta={"model": "toy"},
                    groups=[f"g{k % 3}" for k in range(len(IDS))])
    w.write_part(IDS[:5], [x[:5] for x in layers])
    w.write_part(IDS[5:], [x[5:] for x in layers])
    return w.finalize(), layers


def test_export_npy_round_trip(store, tmp_path):
    path, layers = store
    out = export_store(path, tmp_path / "npy", format="npy")
    assert json.loads((out / "stimulus_ids.json").read_text()) == IDS
    index = json.loads((out / "layers.json").read_text())
    assert [r["name"] for r in index] == NAMES
    for r, x in zip(index, layers):
        np.testing.assert_array_equal(np.load(out / r["file"]), x)
    assert json.loads((out / "meta.json").read_text())["group_ids"] == [f"g{k % 3}" for k in range(len(IDS))]
    with pytest.raises(FileExistsError, match="overwrite"):
        export_store(path, out, format="npy")


def test_export_h5_round_trip(store, tmp_path):
    h5py = pytest.importorskip("h5py")
    path, layers = store
    out = export_store(open_store(path), tmp_path / "s.h5", format="h5")
    with h5py.File(out, "r") as f:
        assert [s.decode() for s in f["stimulus_ids"][()]] == IDS
        names = json.loads(f.attrs["layer_names"])
        assert names == NAMES
        for ds, x in zip(sorted(f["layers"].values(), key=lambda d: d.attrs["layer_index"]), layers):
            np.testing.assert_array_equal(ds[()], x)
        assert [ds.attrs["layer_name"] for ds in f["layers"].values()] == sorted(NAMES, key=lambda n: n.replace(
            "/", "_"))


def test_export_pt_round_trip_through_the_cli(store, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    path, layers = store
    out = tmp_path / "s.pt"
    assert main(["export", str(path), "--format", "pt", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    payload = torch.load(out, weights_only=True)
    assert list(payload["layers"]) == NAMES and payload["stimulus_ids"] == IDS
    for t, x in zip(payload["layers"].values(), layers):
        np.testing.assert_array_equal(t.numpy(), x)
    assert main(["export", str(path), "--format", "pt", "--out", str(out)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(path), "--format", "pt", "--out", str(out), "--force"]) == 0


def test_export_refuses_bad_input(store, tmp_path):
    path, _ = store
    with pytest.raises(ValueError, match="npy"):
        export_store(path, tmp_path / "x", format="csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_store(path, tmp_path / "no" / "x.h5", format="h5")
    with pytest.raises(FileNotFoundError, match="no activation store"):
        export_store(tmp_path / "missing.parquet", tmp_path / "x.h5", format="h5")
