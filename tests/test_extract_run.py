"""extract(): stores, skipping, resuming after an interruption, errors, public surface."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import _extract_tiny as tiny  # noqa: E402

import align.extract._extract as extract_module  # noqa: E402
from align.data._stimuli import Stimulus  # noqa: E402
from align.data._stimuli import StimulusError  # noqa: E402
from align.data._stimuli import StimulusSet  # noqa: E402
from align.extract import extract  # noqa: E402
from align.extract._hf import load_hf  # noqa: E402
from align.store import NonFiniteActivationError  # noqa: E402
from align.store import StoreWriter  # noqa: E402
from align.store import open_store  # noqa: E402
from align.store import store_path  # noqa: E402


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    return {"dinov2": tiny.vision_model(root / "dinov2", "dinov2"),
            "llama": tiny.language_model(root / "llama", "llama"),
            "stimuli": tiny.stimulus_set(root / "stimuli", n=5)}


def _run(spec, stimuli, root, **kwargs):
    return extract(spec, stimuli, root, batch_size=2, device="cpu", progress=False, **kwargs)


def test_vision_stores(made, tmp_path):
    spec, stim = made["dinov2"], made["stimuli"]
    paths = _run(spec, stim, tmp_path, config_fingerprint="fp1")
    assert set(paths) == {"cls", "mean"}
    encoder = load_hf(spec, poolings=("cls", "mean"), device="cpu")
    direct = encoder.encode([stim.load_image(i) for i in range(len(stim))], ["cls", "mean"])
    for pooling, path in paths.items():
        assert path == store_path(tmp_path, "tiny", "original", "tiny-dinov2", pooling,
                                  stimulus_ids=stim.image_ids) and path.exists()
        assert not path.with_name(path.name + ".parts").exists()
        store = open_store(path)
        assert store.stimulus_ids == stim.image_ids
        assert store.layer_names == ["embeddings", "layer_1", "layer_2"]
        meta = store.meta
        assert (meta["model"], meta["pooling"], meta["modality"], meta["dtype"]) == ("tiny-dinov2", pooling,
                                                                                     "vision", "float32")
        assert meta["config_fingerprint"] == "fp1" and meta["image_size"] == [28, 28]
        assert meta["architecture"] == "Dinov2Model" and "BitImageProcessor" in meta["preprocessing"]
        for layer in range(3):
            np.testing.assert_allclose(store.layer(layer), direct[pooling][layer], atol=1e-5)


def test_language_stores_and_skip(made, tmp_path, monkeypatch):
    spec, stim = made["llama"], made["stimuli"]
    paths = _run(spec, stim, tmp_path)
    assert set(paths) == {"mean", "last"}
    store = open_store(paths["last"])
    assert store.stimulus_ids == [cid for cid, _, _ in stim.caption_table()]
    assert store.groups == [iid for _, iid, _ in stim.caption_table()]
    assert store.meta["modality"] == "language" and "eos used" in store.meta["preprocessing"]
    first = _run(spec, stim, tmp_path, poolings="first", captions=0)
    assert open_store(first["first"]).stimulus_ids == [f"{i}#0" for i in stim.image_ids]

    def no_load(*args, **kwargs):
        raise AssertionError("finished stores must be skipped without loading the model")

    monkeypatch.setattr(extract_module, "load_encoder", no_load)
    assert _run(spec, stim, tmp_path) == paths


def test_resume_after_interrupt(made, tmp_path, monkeypatch):
    """Killed after batch 2 wrote 'cls' but not 'mean': the rerun stores every image exactly once in both."""
    spec, stim = made["dinov2"], made["stimuli"]
    reference = _run(spec, stim, tmp_path / "ref")
    original = StoreWriter.write_part
    calls = []

    def interrupted(self, ids, layers):
        calls.append((self.path.stem, list(ids)))
        if len(calls) == 4:  # batch 1: cls, mean; batch 2: cls, then stop before mean
            raise KeyboardInterrupt
        return original(self, ids, layers)

    monkeypatch.setattr(StoreWriter, "write_part", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(spec, stim, tmp_path / "out")
    monkeypatch.setattr(StoreWriter, "write_part", original)
    assert not store_path(tmp_path / "out", "tiny", "original", "tiny-dinov2", "mean",
                          stimulus_ids=stim.image_ids).exists()

    encoded = []
    load = extract_module.load_encoder

    def counting_load(*args, **kwargs):
        encoder = load(*args, **kwargs)
        inner = encoder.encode
        encoder.encode = lambda batch, pools: (encoded.append(len(batch)), inner(batch, pools))[1]
        return encoder

    monkeypatch.setattr(extract_module, "load_encoder", counting_load)
    paths = _run(spec, stim, tmp_path / "out")
    assert sum(encoded) == 3  # img2..img4: img2, img3 still lacked 'mean'
    for pooling, path in paths.items():
        store = open_store(path)
        assert store.stimulus_ids == stim.image_ids
        for layer in range(store.n_layers):
            np.testing.assert_allclose(store.layer(layer), open_store(reference[pooling]).layer(layer), atol=1e-5)


def test_unreadable_image(made, tmp_path):
    good = made["stimuli"]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    items = list(good.stimuli)
    items[3] = Stimulus(image_id="img3", image=broken, captions=("a dog",))
    stim = StimulusSet(name="tiny", stimuli=items)
    with pytest.raises(StimulusError, match=r"img3.*broken\.png"):
        _run(made["dinov2"], stim, tmp_path)
    path = store_path(tmp_path, "tiny", "original", "tiny-dinov2", "cls", stimulus_ids=stim.image_ids)
    assert not path.exists()
    writer = StoreWriter(path, stimulus_ids=stim.image_ids, layer_names=["embeddings", "layer_1", "layer_2"],
                         meta={"config_fingerprint": ""})
    assert writer.pending_ids() == ["img2", "img3", "img4"]  # batch 1 stored, nothing of batch 2
    paths = _run(made["dinov2"], good, tmp_path)  # the image is fixed: the run resumes and finishes
    assert open_store(paths["cls"]).stimulus_ids == good.image_ids


def test_non_finite_activations_name_model_layer_and_stimuli(made, tmp_path, monkeypatch):
    load = extract_module.load_encoder

    def nan_load(*args, **kwargs):
        encoder = load(*args, **kwargs)
        inner = encoder.encode

        def encode(batch, pools):
            out = inner(batch, pools)
            for p in out:
                out[p][1][0, 0] = np.nan
            return out

        encoder.encode = encode
        return encoder

    monkeypatch.setattr(extract_module, "load_encoder", nan_load)
    with pytest.raises(NonFiniteActivationError, match=r"tiny-llama.*layer_1.*img0#0.*float32"):
        _run(made["llama"], made["stimuli"], tmp_path, dtype="bfloat16")


def test_bfloat16_and_image_transform_with_mask(made, tmp_path):
    from PIL import Image

    stim = made["stimuli"]
    mask_path = tmp_path / "mask.png"
    Image.fromarray(np.full((40, 48), 1, dtype=np.uint8)).save(mask_path)
    items = list(stim.stimuli)
    items[1] = Stimulus(image_id="img1", image=items[1].image, captions=items[1].captions, mask=mask_path)
    masked = StimulusSet(name="tiny", stimuli=items)
    seen = []

    def blackout(image, mask):
        seen.append(None if mask is None else mask.shape)
        return Image.new("RGB", image.size)

    paths = _run(made["dinov2"], masked, tmp_path, condition="black", image_transform=blackout, dtype="bfloat16")
    assert seen == [None, (40, 48), None, None, None]
    store = open_store(paths["mean"])
    assert store.meta["dtype"] == "bfloat16" and store.meta["condition"] == "black"
    assert np.isfinite(store.layer(2)).all()
    np.testing.assert_allclose(store.layer(2)[0], store.layer(2)[1])  # all images black -> same vector


def test_model_name_string_resolves(made, tmp_path):
    paths = _run(made["dinov2"].location, made["stimuli"], tmp_path, poolings=["mean"])
    assert open_store(paths["mean"]).n_layers == 3


def test_import_does_not_import_torch():
    code = "import sys, align.extract; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_device_this_torch_lacks_is_a_value_error_before_loading():
    """Library callers get the same clear error as the CLI's preflight (not torch's AssertionError)."""
    torch = pytest.importorskip("torch")
    from align.extract import check_device

    check_device("cpu")
    check_device("auto")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device"):
            check_device("cuda")
