"""Hugging Face transformers backend: all hidden states of a frozen vision or language model.

Layers are transformers' ``hidden_states`` (``output_hidden_states=True``): "embeddings" is index 0 (the embedding
output), then "layer_1" ... "layer_L" (block outputs), as transformers returns them: for language models with a final
norm (LLaMA, Gemma, BLOOM) "layer_L" is after that norm; for DINOv2 and ViT it is before the final layernorm. Models
load in eval mode (no dropout), in the requested dtype, on the requested device.

Vision: ``AutoModel`` + ``AutoImageProcessor``; for dual-tower checkpoints (CLIP, SigLIP) only the vision tower
(``CLIPVisionModel``, ...). Language: the base model without LM head (``AutoModel``; T5: the encoder) +
``AutoTokenizer``. Captions are tokenized in a batch with padding on the tokenizer's own side; pooling reads the
attention mask, and with left padding the position ids are computed from the mask, so a caption gives the same
vector whatever its batch and padding side. A tokenizer without a pad token pads with its eos token (or unk, or
token id 0); padded positions never enter a pooling, so the choice does not change any stored value.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

from align.extract._encoder import Encoder
from align.extract._encoder import check_device_map
from align.extract._encoder import deterministic
from align.extract._encoder import hidden_layer_names
from align.extract._encoder import probe_image
from align.extract._encoder import resolve_device
from align.extract._encoder import torch_dtype
from align.extract._pooling import TokenLayout
from align.extract._pooling import pool_language
from align.extract._pooling import pool_vision
from align.extract._pooling import to_numpy
from align.extract._spec import ModelSpec

# Dual-tower checkpoints whose AutoModel needs both modalities: load one tower.
_VISION_TOWER = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel", "siglip2": "Siglip2VisionModel"}
_LANGUAGE_TOWER = {"clip": "CLIPTextModel", "t5": "T5EncoderModel", "mt5": "MT5EncoderModel"}
# Vision transformers whose token sequence has no class token.
_NO_CLS = {"siglip", "siglip2", "siglip_vision_model", "siglip2_vision_model", "swin", "swinv2", "donut-swin"}


def token_layout(config) -> TokenLayout:
    """Class and register tokens of a transformers vision config.

    Class token first (none for SigLIP/Swin), then ``config.num_register_tokens`` registers (DINOv2 with registers)
    or DeiT's distillation token; the rest are patch tokens.
    """
    model_type = getattr(config, "model_type", "")
    if model_type in _NO_CLS:
        return TokenLayout(has_cls=False, n_prefix=0)
    n_prefix = 1 + int(getattr(config, "num_register_tokens", 0) or 0) + int(model_type == "deit")
    return TokenLayout(has_cls=True, n_prefix=n_prefix)


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load reports and weight-loading bars (e.g. "lm_head.weight UNEXPECTED")."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _load_kwargs(spec: ModelSpec) -> dict:
    kwargs = {}
    if spec.revision and not Path(spec.location).exists():
        kwargs["revision"] = spec.revision  # a Hub commit / tag; local folders have no revisions
    return kwargs


def _model_class(config, table: dict[str, str]):
    import transformers

    name = table.get(getattr(config, "model_type", ""))
    return getattr(transformers, name) if name else transformers.AutoModel


def from_pretrained_kwargs(dtype: str, device_map: str | None = None, low_cpu_mem_usage: bool = False) -> dict:
    """The big-model options of ``from_pretrained``: the compute ``dtype`` (weights loaded in it), ``device_map``
    (accelerate's placement across GPUs) and ``low_cpu_mem_usage`` (weights loaded without a full random-init
    copy; transformers 5 always loads that way and accepts the flag for compatibility)."""
    kwargs = {"dtype": torch_dtype(dtype)}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if low_cpu_mem_usage:
        kwargs["low_cpu_mem_usage"] = True
    return kwargs


def _load_model(spec: ModelSpec, table: dict[str, str], dtype: str, device, device_map=None,
                low_cpu_mem_usage=False):
    from transformers import AutoConfig

    kwargs = _load_kwargs(spec)
    if spec.gguf_file:
        kwargs["gguf_file"] = spec.gguf_file
    config = AutoConfig.from_pretrained(spec.location, **kwargs)
    cls = _model_class(config, table)
    model = cls.from_pretrained(spec.location, **from_pretrained_kwargs(dtype, device_map, low_cpu_mem_usage),
                                **kwargs)
    if device_map is None:
        model = model.to(device)
    return model.eval()


def load_hf(spec: ModelSpec, *, dtype: str = "float32", device: str = "auto", poolings=("mean",),
            device_map: str | None = None, low_cpu_mem_usage: bool = False) -> Encoder:
    """Load a materialized transformers model and check ``poolings`` on one probe input.

    Args:
      spec: a materialized spec (``location`` is a local folder or a Hub id; ``gguf_file`` passed through).
      dtype: compute dtype, "float32", "bfloat16" or "float16" (the weights are loaded in it; pooled activations
        are stored as float32).
      device: "auto" (cuda > mps > cpu) or a torch device string.
      poolings: the poolings ``extract`` will ask for; an impossible one (``cls`` on a CNN) fails here.
      device_map: None (the whole model on ``device``) or "auto": transformers/accelerate spread the layers over
        every visible GPU (models larger than one GPU); inputs go to the device of the first layer.
      low_cpu_mem_usage: passed to ``from_pretrained`` (no full random-init copy of the weights in host memory).

    Returns:
      An ``Encoder`` whose layers are "embeddings", "layer_1" ... "layer_L".

    Raises:
      ValueError: ``device`` or ``device_map`` asks for a GPU this torch build does not see (before any loading).
    """
    check_device_map(device_map, device)
    dev = resolve_device(device)
    opts = {"device_map": device_map, "low_cpu_mem_usage": low_cpu_mem_usage}
    with _quiet_transformers():
        if spec.modality == "vision":
            return _vision_encoder(spec, dtype, dev, poolings, **opts)
        return _language_encoder(spec, dtype, dev, poolings, **opts)


# ------------------------------------------------------------------------------------------------- vision


def _describe_processor(processor) -> str:
    keys = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "do_normalize",
            "image_mean", "image_std")
    settings = processor.to_dict()
    kept = ", ".join(f"{k}={settings[k]}" for k in keys if settings.get(k) is not None)
    return f"{type(processor).__name__}({kept})"


def _vision_encoder(spec: ModelSpec, dtype: str, dev, poolings, **opts) -> Encoder:
    from transformers import AutoImageProcessor

    model = _load_model(spec, _VISION_TOWER, dtype, dev, **opts)
    dev = model.device  # with a device map: the device of the first layer
    processor = AutoImageProcessor.from_pretrained(spec.location, **_load_kwargs(spec))
    layout = token_layout(model.config)
    cdtype = torch_dtype(dtype)

    def hidden_states(images):
        pixels = processor(images=list(images), return_tensors="pt")["pixel_values"]
        with deterministic():
            out = model(pixel_values=pixels.to(dev, cdtype), output_hidden_states=True)
        return pixels, out.hidden_states

    def encode(images, pools):
        _, hs = hidden_states(images)
        with deterministic():
            return to_numpy(pool_vision(hs, pools, layout, what=f"model {spec.name!r}"))

    pixels, hs = hidden_states([probe_image()])
    with deterministic():
        pool_vision(hs, poolings, layout, what=f"model {spec.name!r}")
    info = {"image_size": list(pixels.shape[-2:]), "preprocessing": _describe_processor(processor)}
    return Encoder(name=spec.name, modality="vision", layer_names=hidden_layer_names(len(hs)), encode=encode,
                   architecture=type(model).__name__, info=info, output_shapes=[tuple(h.shape) for h in hs])


# ----------------------------------------------------------------------------------------------- language


def set_pad_token(tokenizer) -> str:
    """Give a tokenizer without a pad token one (eos, else unk, else id 0); returns a note saying which.

    The pad id only fills padded positions, which the attention mask hides and pooling skips.
    """
    if tokenizer.pad_token is not None:
        return f"pad token {tokenizer.pad_token!r}"
    for attr in ("eos_token", "unk_token"):
        token = getattr(tokenizer, attr)
        if token is not None:
            tokenizer.pad_token = token
            return f"pad token {token!r} (the tokenizer had none; {attr.removesuffix('_token')} used)"
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(0)
    return f"pad token id 0 {tokenizer.pad_token!r} (the tokenizer had none)"


def _max_length(tokenizer, config) -> int | None:
    limits = [n for n in (tokenizer.model_max_length, getattr(config, "max_position_embeddings", None))
              if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits) if limits else None


def _positions_from_mask(model) -> bool:
    """Whether to pass ``position_ids`` computed from the mask when a batch is left-padded.

    Models without a ``position_ids`` argument (BLOOM: ALiBi from the mask) and RoBERTa-style embeddings (positions
    derived from the input ids, offset by the padding index) already handle left padding themselves.
    """
    params = inspect.signature(model.forward).parameters
    if "position_ids" not in params:
        return False
    embeddings = getattr(model, "embeddings", None)
    return getattr(embeddings, "padding_idx", None) is None


def _language_encoder(spec: ModelSpec, dtype: str, dev, poolings, **opts) -> Encoder:
    from transformers import AutoTokenizer

    kwargs = _load_kwargs(spec)
    if spec.gguf_file:
        kwargs["gguf_file"] = spec.gguf_file
    tokenizer = AutoTokenizer.from_pretrained(spec.location, **kwargs)
    pad_note = set_pad_token(tokenizer)
    model = _load_model(spec, _LANGUAGE_TOWER, dtype, dev, **opts)
    dev = model.device  # with a device map: the device of the first layer
    max_length = _max_length(tokenizer, model.config)
    accepted = set(inspect.signature(model.forward).parameters)
    positions = _positions_from_mask(model)

    def hidden_states(texts):
        enc = tokenizer(list(texts), padding=True, truncation=max_length is not None, max_length=max_length,
                        return_tensors="pt")
        mask = enc["attention_mask"].to(dev)
        inputs = {k: v.to(dev) for k, v in enc.items() if k in accepted}
        if positions and bool((mask[:, 0] == 0).any()):
            inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        with deterministic():
            out = model(**inputs, output_hidden_states=True)
        return mask, out.hidden_states

    def encode(texts, pools):
        mask, hs = hidden_states(texts)
        with deterministic():
            return to_numpy(pool_language(hs, mask, pools))

    mask, hs = hidden_states(["a photo"])
    with deterministic():
        pool_language(hs, mask, poolings)
    note = (f"{type(tokenizer).__name__}, padding side {tokenizer.padding_side}, {pad_note}, "
            f"max_length {max_length}")
    return Encoder(name=spec.name, modality="language", layer_names=hidden_layer_names(len(hs)), encode=encode,
                   architecture=type(model).__name__, info={"preprocessing": note},
                   output_shapes=[tuple(h.shape) for h in hs])
