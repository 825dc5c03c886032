"""Any ``torch.nn.Module``: activations of named submodules through forward hooks.

A spec with backend "torch_module" carries ``builder() -> (module, preprocess, layer_names)``, where
``preprocess(list[PIL.Image]) -> [b, 3, H, W]`` tensor and ``layer_names`` are names from ``module.named_modules()``
(stored under those names, in the given order). Hooks are registered for one forward pass and removed right after,
even when it fails. A module's output is taken as is (the first element of a tuple output); when a submodule runs
several times in one pass, its last output is kept.

Pooling by output shape: ``[b, c, h, w]`` feature maps -> spatial mean (``cls`` is an error); ``[b, t, d]`` token
sequences -> ``cls`` = token 0, ``mean`` = mean of tokens 1:; ``[b, d]`` vectors are stored unchanged by every pooling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from align.extract._encoder import Encoder
from align.extract._encoder import deterministic
from align.extract._encoder import probe_image
from align.extract._encoder import resolve_device
from align.extract._encoder import torch_dtype
from align.extract._pooling import TokenLayout
from align.extract._pooling import pool_vision
from align.extract._pooling import to_numpy
from align.extract._spec import ModelSpec


def capture(module, layer_names: Sequence[str], inputs) -> list:
    """Run ``module(inputs)`` once and return the output of each named submodule, in ``layer_names`` order.

    Raises:
      ValueError: a name that is not a submodule (the message lists some that are), or a submodule that did not
        run during the forward pass.
    """
    named = dict(module.named_modules())
    missing = [n for n in layer_names if n not in named]
    if missing:
        known = [n for n in named if n][:20]
        raise ValueError(f"{type(module).__name__} has no submodules {missing}; named submodules include {known}")
    captured: dict[str, object] = {}

    def hook_for(name):
        def hook(_module, _args, output):
            captured[name] = output[0] if isinstance(output, (tuple, list)) else output
        return hook

    handles = [named[n].register_forward_hook(hook_for(n)) for n in layer_names]
    try:
        module(inputs)
    finally:
        for h in handles:
            h.remove()
    silent = [n for n in layer_names if n not in captured]
    if silent:
        raise ValueError(f"submodules {silent} of {type(module).__name__} did not run in the forward pass; "
                         f"choose modules on the path from input to output")
    return [captured[n] for n in layer_names]


def module_encoder(module, preprocess: Callable, layer_names: Sequence[str], *, name: str = "module",
                   dtype: str = "float32", device: str = "auto", poolings=("mean",)) -> Encoder:
    """An ``Encoder`` over a vision ``torch.nn.Module`` (eval mode, given dtype and device).

    Args:
      module: the model.
      preprocess: ``list[PIL.Image] -> torch.Tensor [b, 3, H, W]``.
      layer_names: submodules to hook, stored under these names.
      name: model name for messages.
      dtype: compute dtype name.
      device: "auto" or a torch device string.
      poolings: checked on one probe image (``cls`` on feature maps fails here, before anything is stored).
    """
    dev = resolve_device(device)
    cdtype = torch_dtype(dtype)
    module = module.to(dev, cdtype).eval()
    layer_names = list(layer_names)
    what = f"model {name!r}"

    def encode(images, pools):
        with deterministic():
            x = preprocess(list(images)).to(dev, cdtype)
            return to_numpy(pool_vision(capture(module, layer_names, x), pools, TokenLayout(), what=what))

    with deterministic():
        raw = capture(module, layer_names, preprocess([probe_image()]).to(dev, cdtype))
        pool_vision(raw, poolings, TokenLayout(), what=what)  # an impossible pooling fails here, before any store
    return Encoder(name=name, modality="vision", layer_names=layer_names, encode=encode,
                   architecture=type(module).__name__,
                   info={"preprocessing": f"builder preprocess {getattr(preprocess, '__qualname__', preprocess)}"},
                   output_shapes=[tuple(r.shape) for r in raw])


def load_module(spec: ModelSpec, *, dtype: str = "float32", device: str = "auto", poolings=("mean",)) -> Encoder:
    """Build a "torch_module" spec with its ``builder`` and wrap it with hooks."""
    if spec.builder is None:
        raise ValueError(f"model {spec.name!r}: backend 'torch_module' needs a builder() -> "
                         f"(module, preprocess, layer_names)")
    if spec.modality != "vision":
        raise ValueError(f"model {spec.name!r}: backend 'torch_module' supports vision models only; load language "
                         f"models with backend 'hf'")
    module, preprocess, layer_names = spec.builder()
    return module_encoder(module, preprocess, layer_names, name=spec.name, dtype=dtype, device=device,
                          poolings=poolings)
