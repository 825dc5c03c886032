"""timm backend: block outputs through ``model.forward_intermediates``.

Layers are "layer_1" ... "layer_n", one per intermediate timm returns for ``indices=None`` (every block of a ViT,
every stage / feature level of a CNN); there is no "embeddings" layer. For models with prefix tokens (class,
registers) the intermediates are requested in NLC format with their prefix tokens, so ``cls`` is the class token
and ``mean`` the mean of the patch tokens; CNN feature maps ``[b, c, h, w]`` give the spatial mean (``cls`` is an
error). Preprocessing is timm's own eval transform (``resolve_model_data_config`` + ``create_transform``).

timm is imported only when a timm model is loaded; the runner (``intermediates_encoder``) needs only an object
with timm's ``forward_intermediates`` method.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from align.extract._encoder import Encoder
from align.extract._encoder import block_layer_names
from align.extract._encoder import deterministic
from align.extract._encoder import probe_image
from align.extract._encoder import resolve_device
from align.extract._encoder import torch_dtype
from align.extract._pooling import TokenLayout
from align.extract._pooling import pool_vision
from align.extract._pooling import to_numpy
from align.extract._spec import ModelSpec
from align.extract._spec import ModelUnavailableError


def intermediates(model, x) -> tuple[list, TokenLayout]:
    """All intermediates of ``model.forward_intermediates(x)`` with their token layout.

    Returns:
      (one tensor per block: ``[b, t, d]`` with prefix tokens first, or ``[b, c, h, w]``; the layout).
    """
    import torch

    n_prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    params = inspect.signature(model.forward_intermediates).parameters
    if n_prefix and "return_prefix_tokens" in params:
        feats = model.forward_intermediates(x, intermediates_only=True, return_prefix_tokens=True, output_fmt="NLC")
        tokens = [torch.cat([prefix, patches], dim=1) for patches, prefix in feats]
        has_cls = getattr(model, "cls_token", None) is not None
        return tokens, TokenLayout(has_cls=has_cls, n_prefix=n_prefix)
    feats = model.forward_intermediates(x, intermediates_only=True)
    return list(feats), TokenLayout(has_cls=False, n_prefix=0)


def intermediates_encoder(model, preprocess: Callable, *, name: str = "timm model", dtype: str = "float32",
                          device: str = "auto", poolings=("mean",), info: dict | None = None) -> Encoder:
    """An ``Encoder`` over a model with timm's ``forward_intermediates`` (eval mode, given dtype and device).

    Args:
      model: a timm model (or anything with the same ``forward_intermediates``).
      preprocess: ``list[PIL.Image] -> torch.Tensor [b, 3, H, W]``.
      name: model name for messages.
      dtype: compute dtype name.
      device: "auto" or a torch device string.
      poolings: checked on one probe image, before anything is stored.
      info: extra provenance for the store's meta.
    """
    dev = resolve_device(device)
    cdtype = torch_dtype(dtype)
    model = model.to(dev, cdtype).eval()
    what = f"model {name!r}"

    def encode(images, pools):
        with deterministic():
            feats, layout = intermediates(model, preprocess(list(images)).to(dev, cdtype))
            return to_numpy(pool_vision(feats, pools, layout, what=what))

    with deterministic():
        feats, layout = intermediates(model, preprocess([probe_image()]).to(dev, cdtype))
        pool_vision(feats, poolings, layout, what=what)  # an impossible pooling fails here, before anything is stored
    return Encoder(name=name, modality="vision", layer_names=block_layer_names(len(feats)), encode=encode,
                   architecture=type(model).__name__, info=dict(info or {}),
                   output_shapes=[tuple(f.shape) for f in feats])


def _create_model(timm, spec: ModelSpec):
    location = Path(spec.location)
    if location.is_file():  # a checkpoint file for the architecture named in the spec
        return timm.create_model(spec.architecture, pretrained=True, pretrained_cfg_overlay={"file": str(location)})
    if location.is_dir():  # a Hub-style folder (config.json + weights)
        return timm.create_model(f"local-dir:{location}", pretrained=True)
    return timm.create_model(spec.location, pretrained=True)  # a timm name or "hf-hub:org/name"


def load_timm(spec: ModelSpec, *, dtype: str = "float32", device: str = "auto", poolings=("mean",)) -> Encoder:
    """Load a timm model (a timm name, ``hf-hub:`` id, local folder, or checkpoint file + ``architecture``)."""
    import torch

    try:
        import timm
        import timm.data
    except ImportError as e:
        raise ModelUnavailableError(
            f"model {spec.name!r} needs timm, which cannot be imported here ({e}); install it (`pip install timm`, "
            f"with the torch build you already have) or use a transformers checkpoint of the same model") from None
    if spec.modality != "vision":
        raise ValueError(f"model {spec.name!r}: the timm backend loads vision models only")
    model = _create_model(timm, spec)
    data_config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**data_config, is_training=False)

    def preprocess(images):
        return torch.stack([transform(im) for im in images])

    info = {"image_size": list(data_config["input_size"][-2:]),
            "preprocessing": f"timm eval transform {data_config}"}
    return intermediates_encoder(model, preprocess, name=spec.name, dtype=dtype, device=device, poolings=poolings,
                                 info=info)
