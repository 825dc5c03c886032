"""Activation store: round trip, provenance, zero-copy reads, resumable atomic writes, refusals."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import align.store._writer
from align.data._stimuli import order_hash
from align.store import ActivationStore
from align.store import NonFiniteActivationError
from align.store import StoreFormatError
from align.store import StoreMismatchError
from align.store import StoreWriter
from align.store import align_rows
from align.store import open_store
from align.store import store_path

IDS = [f"img{k:03d}" for k in range(12)]
LAYERS = ["embeddings", "encoder.layer.0", "encoder.layer.1"]
WIDTHS = [3, 5, 4]
META = {"model": "org/tiny", "model_source": "test", "revision": "r1", "architecture": "toy", "modality": "vision",
        "pooling": "cls", "dtype": "float32", "stimulus_set": "toy", "condition": "original",
        "config_fingerprint": "fp1"}


def activations(ids, widths=WIDTHS):
    """Deterministic per-stimulus values: row of stimulus k in layer l is k + l / 10 + arange(d) / 100."""
    ks = np.array([IDS.index(i) for i in ids], dtype=np.float64)
    return [ks[:, None] + l / 10 + np.arange(d)[None, :] / 100 for l, d in enumerate(widths)]


def writer(path, **kwargs):
    args = {"stimulus_ids": IDS, "layer_names": LAYERS, "meta": META} | kwargs
    return StoreWriter(path, **args)


def write_all(path, batch=5, order=None, **kwargs):
    w = writer(path, **kwargs)
    ids = order or IDS
    for s in range(0, len(ids), batch):
        w.write_part(ids[s:s + batch], activations(ids[s:s + batch]))
    return w.finalize()


def test_store_errors_are_value_errors():
    for error in [StoreMismatchError, NonFiniteActivationError, StoreFormatError]:
        assert issubclass(error, ValueError)


def test_store_path(tmp_path):
    p = store_path(tmp_path, "coco5k", "original", "facebook/dinov2-small", "cls", stimulus_ids=IDS)
    folder = tmp_path / "activations" / "coco5k" / "original" / "facebook__dinov2-small"
    assert p == folder / f"cls-{order_hash(IDS)}.parquet"
    # another subset, or the same ids in another order, is another store: the paths never collide
    assert store_path(tmp_path, "coco5k", "original", "facebook/dinov2-small", "cls", stimulus_ids=IDS[:6]) != p
    assert store_path(tmp_path, "coco5k", "original", "facebook/dinov2-small", "cls", stimulus_ids=IDS[::-1]) != p
    with pytest.raises(ValueError, match="pooling"):
        store_path(tmp_path, "coco5k", "original", "m", "", stimulus_ids=IDS)
    with pytest.raises(ValueError, match="stimulus_ids"):
        store_path(tmp_path, "coco5k", "original", "m", "cls", stimulus_ids=[])


def test_store_path_matches_the_order_hash_the_writer_records(tmp_path):
    path = store_path(tmp_path, "toy", "original", "org/tiny", "cls", stimulus_ids=IDS)
    store = open_store(write_all(path))
    assert path.name == f"cls-{store.order_hash}.parquet"


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip_and_metadata(tmp_path, dtype):
    groups = [f"g{k // 2}" for k in range(len(IDS))]
    path = write_all(tmp_path / "s.parquet", groups=groups, dtype=dtype)
    assert path == tmp_path / "s.parquet" and not (tmp_path / "s.parquet.parts").exists()
    s = open_store(path)
    assert isinstance(s, ActivationStore)
    assert s.stimulus_ids == IDS and s.groups == groups
    assert s.layer_names == LAYERS and s.n_layers == 3 and s.widths == WIDTHS
    assert s.order_hash == order_hash(IDS) and s.dtype == dtype
    for key, value in META.items():
        assert s.meta[key] == value
    assert s.meta["n_layers"] == 3 and s.meta["layer_names"] == LAYERS and s.meta["widths"] == WIDTHS
    assert s.meta["stimulus_order_hash"] == order_hash(IDS) and s.meta["align_version"]
    assert s.meta["created"].endswith("+00:00")
    expected = activations(IDS)
    tol = 1e-6 if dtype == "float32" else 2e-2
    for l, name in enumerate(LAYERS):
        for x in (s.layer(l), s.layer(name), s[name], s.layers()[l]):
            assert x.dtype == np.float32 and x.shape == (len(IDS), WIDTHS[l])
            np.testing.assert_allclose(x, expected[l], atol=tol)
    assert list(s) == LAYERS and len(s) == 3 and "encoder.layer.0" in s
    np.testing.assert_array_equal(s.layer(-1), s.layer(2))
    with pytest.raises(KeyError, match="no layer"):
        s.layer("nope")
    schema = pq.read_schema(path)
    assert schema.names == ["stimulus_id", "group_id", *LAYERS]
    assert schema.field(LAYERS[1]).type == pa.list_(pa.field("element", getattr(pa, dtype)(), nullable=False), 5)


def test_layer_read_is_cached_view_without_copy(tmp_path):
    path = write_all(tmp_path / "s.parquet")
    s = open_store(path)
    x = s.layer(1)
    assert s.layer("encoder.layer.0") is x and np.shares_memory(s.layer(1), x)
    assert not x.flags.owndata and not x.flags.writeable  # a view of Arrow memory, read-only
    uncached = open_store(path, cache=False)
    assert uncached.layer(1) is not uncached.layer(1)
    assert not uncached.layer(1).flags.owndata


def test_multiple_row_groups_and_out_of_order_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(align.store._writer, "ROW_GROUP_BYTES", 4 * sum(WIDTHS) * 5)  # 5 rows per row group
    order = IDS[6:] + IDS[:6]
    path = write_all(tmp_path / "s.parquet", batch=4, order=order)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    s = open_store(path)
    assert s.stimulus_ids == IDS
    np.testing.assert_allclose(s.layer(2), activations(IDS)[2], atol=1e-6)


def test_parquet_without_align_metadata_is_refused(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"stimulus_id": ["a"]}), plain)
    with pytest.raises(StoreFormatError, match="plain.parquet.*align metadata"):
        open_store(plain)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(StoreFormatError, match="junk.parquet"):
        open_store(junk)
    with pytest.raises(FileNotFoundError, match="run the extraction"):
        open_store(tmp_path / "missing.parquet")


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_store import IDS, activations, writer
    w = writer({path!r})
    for sid in w.pending_ids():
        w.write_part([sid], activations([sid]))
        print("part", flush=True)
        time.sleep(0.2)
    print("done", flush=True)
    time.sleep(60)
""")


def test_resume_after_kill_stores_every_stimulus_once_in_order(tmp_path):
    path = tmp_path / "s.parquet"
    w = writer(path)
    w.write_part(IDS[5:7], activations(IDS[5:7]))  # an earlier run already stored two stimuli, out of order
    code = _KILLED_WRITER.format(tests=str(Path(__file__).parent), path=str(path))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "part"
        assert child.stdout.readline().strip() == "part"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    parts = path.with_name("s.parquet.parts")
    (parts / "part-00099.parquet.12345.tmp").write_bytes(b"half a file")  # a write interrupted by the kill
    (tmp_path / "s.parquet.12345.tmp").write_bytes(b"half a merge")
    resumed = writer(path)
    assert not list(parts.glob("*.tmp")) and not list(tmp_path.glob("*.tmp"))
    pending = resumed.pending_ids()
    assert 2 + 2 <= resumed.n_stored < len(IDS)
    assert pending == [sid for sid in IDS if sid in pending]  # stimulus order
    assert IDS[5] not in pending and IDS[6] not in pending
    for sid in pending:
        resumed.write_part([sid], activations([sid]))
    resumed.finalize()
    s = open_store(path)
    assert s.stimulus_ids == IDS
    for l in range(3):
        np.testing.assert_allclose(s.layer(l), activations(IDS)[l], atol=1e-6)


@pytest.mark.parametrize("change, what", [
    ({"meta": META | {"config_fingerprint": "fp2"}}, "config_fingerprint"),
    ({"stimulus_ids": IDS[::-1]}, "stimulus_order_hash"),
    ({"layer_names": ["a", "b", "c"]}, "layer_names"),
    ({"dtype": "float16"}, "store_dtype"),
])
def test_resume_refuses_parts_of_another_run(tmp_path, change, what):
    path = tmp_path / "s.parquet"
    writer(path).write_part(IDS[:2], activations(IDS[:2]))
    with pytest.raises(StoreMismatchError, match=f"different {what}.*delete .*s.parquet.parts"):
        writer(path, **change)


def test_write_part_rejects_bad_input(tmp_path):
    w = writer(tmp_path / "s.parquet")
    w.write_part(IDS[:2], activations(IDS[:2]))
    with pytest.raises(ValueError, match="got 2 layer arrays but the store has 3 layers"):
        w.write_part(IDS[2:4], activations(IDS[2:4])[:2])
    with pytest.raises(ValueError, match="width 6 but the first part stored width 5"):
        w.write_part(IDS[2:4], activations(IDS[2:4], widths=[3, 6, 4]))
    with pytest.raises(ValueError, match=r"layer 'embeddings' \(index 0\) has shape \(3, 3\)"):
        w.write_part(IDS[2:4], activations(IDS[2:5]))
    with pytest.raises(ValueError, match="1 ids are not in this store's stimulus list.*'nope'"):
        w.write_part(["nope"], activations(IDS[:1]))
    with pytest.raises(ValueError, match="1 ids are already stored.*'img001'"):
        w.write_part(IDS[1:3], activations(IDS[1:3]))
    with pytest.raises(ValueError, match="repeated"):
        w.write_part([IDS[3], IDS[3]], activations([IDS[3], IDS[3]]))
    assert w.pending_ids() == IDS[2:]


def test_non_finite_values_are_refused_with_layer_and_ids(tmp_path):
    w = writer(tmp_path / "s.parquet")
    xs = activations(IDS[:4])
    xs[1][[1, 3], 0] = np.nan
    xs[1][3, 2] = np.inf
    with pytest.raises(NonFiniteActivationError,
                       match=r"'encoder.layer.0' \(index 1\) has 3 non-finite.*2 of 4 stimuli.*'img001', 'img003'.*"
                             r"dtype='float32'"):
        w.write_part(IDS[:4], xs)
    half = writer(tmp_path / "h.parquet", dtype="float16")
    xs = activations(IDS[:2])
    xs[0][1, 1] = 1e6
    with pytest.raises(NonFiniteActivationError, match=r"beyond the float16 range.*'img001'.*dtype='float32'"):
        half.write_part(IDS[:2], xs)
    assert w.pending_ids() == IDS and half.pending_ids() == IDS


def test_finalize_needs_every_id_then_is_idempotent_and_final(tmp_path):
    path = tmp_path / "s.parquet"
    w = writer(path)
    w.write_part(IDS[:3], activations(IDS[:3]))
    with pytest.raises(ValueError, match=r"9 of 12 stimuli are not stored yet, e.g. \['img003', 'img004'"):
        w.finalize()
    w.write_part(IDS[3:], activations(IDS[3:]))
    assert w.finalize() == path and w.finalize() == path and w.complete
    created = open_store(path).meta["created"]
    again = writer(path)
    assert again.complete and again.pending_ids() == [] and again.finalize() == path
    with pytest.raises(ValueError, match="already finished; delete it"):
        again.write_part(IDS[:1], activations(IDS[:1]))
    with pytest.raises(ValueError, match="already finished"):
        w.write_part(IDS[:1], activations(IDS[:1]))
    assert open_store(path).meta["created"] == created and open_store(path).stimulus_ids == IDS


def test_open_unfinished_store_points_to_resume(tmp_path):
    path = tmp_path / "s.parquet"
    writer(path).write_part(IDS[:2], activations(IDS[:2]))
    with pytest.raises(FileNotFoundError, match="unfinished extraction"):
        open_store(path)


def test_align_rows(tmp_path):
    a = open_store(write_all(tmp_path / "a.parquet"))
    same = open_store(write_all(tmp_path / "same.parquet"))
    assert align_rows(a, same) is None
    shuffled_ids = IDS[3:][::-1]  # 9 of A's ids, reversed
    b = open_store(write_all(tmp_path / "b.parquet", stimulus_ids=shuffled_ids, order=shuffled_ids))
    with pytest.raises(StoreMismatchError, match="3 ids of A are not in B and 0 ids of B.*align_by_id=True"):
        align_rows(a, b)
    rows_a, rows_b = align_rows(a, b, align_by_id=True)
    assert rows_a.dtype == np.int64 and list(rows_a) == list(range(3, 12))
    assert [a.stimulus_ids[i] for i in rows_a] == [b.stimulus_ids[j] for j in rows_b]
    np.testing.assert_array_equal(a.layer(1)[rows_a], b.layer(1)[rows_b])
    reordered = open_store(write_all(tmp_path / "r.parquet", stimulus_ids=IDS[::-1], order=IDS[::-1]))
    with pytest.raises(StoreMismatchError, match="same ids in a different order"):
        align_rows(a, reordered)
