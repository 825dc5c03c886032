"""transformers backend on tiny random models of every family: layers, poolings against a manual computation from
the same hidden states, padding-side invariance, bfloat16."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import _extract_tiny as tiny  # noqa: E402

from align.extract._hf import load_hf  # noqa: E402

TEXTS = ["a big blue car near the house under the tree", "a cat", "the bird sits on a green tree near the road",
         "a dog"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    specs = {}
    for family in tiny.VISION_FAMILIES:
        specs[family] = tiny.vision_model(root / family, family)
    for family in tiny.LANGUAGE_FAMILIES:
        right = tiny.language_model(root / family, family)
        left = root / f"{family}-left"
        shutil.copytree(right.location, left)
        config = json.loads((left / "tokenizer_config.json").read_text())
        (left / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
        specs[family] = right
        specs[f"{family}-left"] = tiny.ModelSpec(name=f"tiny-{family}-left", modality="language", backend="hf",
                                                 location=str(left))
    specs["images"] = tiny.stimulus_set(root / "stimuli", n=3)
    return specs


def _reference_vision(location, family, images):
    """Hidden states straight from transformers, and the number of non-patch tokens, stated per family."""
    cls = transformers.CLIPVisionModel if family == "clip" else transformers.AutoModel
    model = cls.from_pretrained(location).eval()
    pixels = transformers.AutoImageProcessor.from_pretrained(location)(images=images, return_tensors="pt")
    with torch.no_grad():
        hs = model(pixel_values=pixels["pixel_values"], output_hidden_states=True).hidden_states
    n_prefix = {"dinov2": 1, "dinov2_registers": 1 + 3, "vit": 1, "clip": 1}[family]
    return model.config, hs, n_prefix


@pytest.mark.parametrize("family", tiny.VISION_FAMILIES)
def test_vision_layers_and_poolings(folders, family):
    spec, stim = folders[family], folders["images"]
    images = [stim.load_image(i) for i in range(3)]
    encoder = load_hf(spec, poolings=("cls", "mean"), device="cpu")
    out = encoder.encode(images, ["cls", "mean"])
    config, hs, n_prefix = _reference_vision(spec.location, family, images)
    assert encoder.layer_names == ["embeddings"] + [f"layer_{i}" for i in range(1, config.num_hidden_layers + 1)]
    assert len(out["cls"]) == len(out["mean"]) == config.num_hidden_layers + 1 == len(hs)
    for layer, h in enumerate(hs):
        assert h.shape[1] == n_prefix + 16  # 28x28 image, 7x7 patches
        np.testing.assert_allclose(out["cls"][layer], h[:, 0].numpy(), atol=1e-5)
        np.testing.assert_allclose(out["mean"][layer], h[:, n_prefix:].mean(1).numpy(), atol=1e-5)
        assert out["mean"][layer].dtype == np.float32
    assert encoder.info["image_size"] == [28, 28]
    if family == "clip":
        assert encoder.architecture == "CLIPVisionModel"


def _reference_language(location, text):
    """Pooled vectors of one caption run alone (no padding) straight through transformers."""
    tok = transformers.AutoTokenizer.from_pretrained(location)
    model = transformers.AutoModel.from_pretrained(location).eval()
    enc = tok([text], return_tensors="pt")
    with torch.no_grad():
        hs = model(**{k: v for k, v in enc.items() if k != "token_type_ids"}, output_hidden_states=True).hidden_states
    return model.config, {"mean": [h[0].mean(0) for h in hs], "last": [h[0, -1] for h in hs],
                          "first": [h[0, 0] for h in hs]}


@pytest.mark.parametrize("family", tiny.LANGUAGE_FAMILIES)
def test_language_poolings_any_padding(folders, family):
    """Each caption pooled in a padded batch (right or left) equals the caption run alone, to ~1e-5."""
    pools = ["mean", "last", "first"]
    right = load_hf(folders[family], poolings=pools, device="cpu")
    left = load_hf(folders[f"{family}-left"], poolings=pools, device="cpu")
    batched_right, batched_left = right.encode(TEXTS, pools), left.encode(TEXTS, pools)
    for row, text in enumerate(TEXTS):
        config, ref = _reference_language(folders[family].location, text)
        alone = right.encode([text], pools)
        assert len(right.layer_names) == config.num_hidden_layers + 1
        for p in pools:
            for layer in range(config.num_hidden_layers + 1):
                expected = ref[p][layer].numpy()
                np.testing.assert_allclose(batched_right[p][layer][row], expected, atol=1e-5, err_msg=f"{p} {layer}")
                np.testing.assert_allclose(batched_left[p][layer][row], expected, atol=1e-5, err_msg=f"{p} {layer}")
                np.testing.assert_allclose(alone[p][layer][0], expected, atol=1e-5)


def test_last_is_the_last_real_token_not_a_pad(folders):
    """LLaMA-style tokenizer without a pad token pads with eos; ``last`` must still pick the last word."""
    encoder = load_hf(folders["llama"], poolings=("last",), device="cpu")
    assert "eos used" in encoder.info["preprocessing"]
    tok = transformers.AutoTokenizer.from_pretrained(folders["llama"].location)
    model = transformers.AutoModel.from_pretrained(folders["llama"].location).eval()
    ids = tok(["a cat"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        final = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
    out = encoder.encode(["a cat", "a big dog sits on the grass near the house"], ["last"])["last"][-1][0]
    np.testing.assert_allclose(out, final[-1].numpy(), atol=1e-5)
    assert not np.allclose(out, final[-2].numpy(), atol=1e-3)


def test_bfloat16_runs(folders):
    stim = folders["images"]
    images = [stim.load_image(i) for i in range(2)]
    for spec, batch, pools in ((folders["dinov2"], images, ["cls", "mean"]), (folders["llama"], TEXTS, ["mean", "last"])):
        full = load_hf(spec, poolings=pools, device="cpu").encode(batch, pools)
        half = load_hf(spec, dtype="bfloat16", poolings=pools, device="cpu").encode(batch, pools)
        for p in pools:
            for a, b in zip(full[p], half[p]):
                assert b.dtype == np.float32 and np.isfinite(b).all()
                np.testing.assert_allclose(b, a, atol=0.15 * np.abs(a).max() + 0.05)
