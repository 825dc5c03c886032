"""What every backend (transformers, timm, hooked torch module) hands to ``extract``: an ``Encoder``.

Also the runtime choices they share: the device (``auto``: cuda > mps > cpu), the compute dtype, and a
deterministic-inference context.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass
class Encoder:
    """A loaded, frozen model that turns a batch of stimuli into pooled activations of every layer.

    Attributes:
      name: the model name (for messages).
      modality: "vision" or "language".
      layer_names: one name per stored layer, in depth order.
      encode: ``encode(batch, poolings) -> {pooling: [one [b, d_l] float32 array per layer]}``; ``batch`` is a
        list of RGB ``PIL.Image`` (vision) or of strings (language). One forward pass serves every pooling.
      architecture: class name of the loaded model.
      info: extra provenance for the store's meta (e.g. ``image_size``, ``preprocessing``).
      output_shapes: the raw (unpooled) output shape of each layer on the one probe input the backend ran at load
        time (``[1, tokens, d]``, ``[1, c, h, w]`` or ``[1, d]``), in ``layer_names`` order; empty when unknown.
    """

    name: str
    modality: str
    layer_names: list[str]
    encode: Callable[[list, Sequence[str]], dict[str, list[np.ndarray]]]
    architecture: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    output_shapes: list[tuple[int, ...]] = dataclasses.field(default_factory=list)


def check_dtype(dtype: str) -> str:
    """Validate a compute dtype name ("float32", "bfloat16" or "float16")."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}")
    return dtype


def torch_dtype(dtype: str):
    """The torch dtype for a dtype name."""
    import torch

    return getattr(torch, check_dtype(dtype))


def resolve_device(device: str = "auto"):
    """``auto`` picks cuda, then mps, then cpu; any other string is checked (:func:`check_device`) and passed to
    ``torch.device``."""
    import torch

    if device != "auto":
        check_device(device)
        return torch.device(device)
    if torch.cuda.is_available():
        # deterministic cuBLAS needs this before the first CUDA matmul of the process (no effect if set later)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(device: str) -> None:
    """Raise a ValueError naming the problem unless ``device`` is one this torch build has ("auto" and "cpu" always
    are); called before a model is loaded, so a bad device fails before any work."""
    if device in ("auto", "cpu"):
        return
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device = {device!r}, but this torch build ({torch.__version__}) sees no CUDA "
                             f"device (torch.cuda.is_available() is False: a CPU-only build or no GPU); use device "
                             f"= 'auto' (cuda > mps > cpu) or 'cpu'")
        index = int(device.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(f"device = {device!r}, but torch sees {count} CUDA device(s) "
                             f"(cuda:0 .. cuda:{count - 1}); use one of them or 'auto'")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device = 'mps', but this torch build ({torch.__version__}) has no MPS device "
                         f"(Apple GPUs only); use device = 'auto' or 'cpu'")


def check_device_map(device_map: str | None, device: str = "auto") -> None:
    """Raise a ValueError naming the problem unless ``device_map`` (transformers' ``from_pretrained`` placement of
    a big model's layers across GPUs, via accelerate) can be honoured here; called before a model is loaded.

    Args:
      device_map: None (the whole model on ``device``) or ``"auto"`` (spread over every visible GPU).
      device: the ``extract.device``; with a device map it must be "auto" or "cuda" (the map decides).
    """
    if device_map is None:
        return
    if device_map != "auto":
        raise ValueError(f"device_map must be None or 'auto' (spread the model over every visible GPU), got "
                         f"{device_map!r}")
    if device not in ("auto", "cuda"):
        raise ValueError(f"device_map = 'auto' places the model itself; device must be 'auto' or 'cuda', got "
                         f"{device!r}")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"device_map = 'auto' spreads a model over GPUs, but this torch build ({torch.__version__}) "
                         "sees no CUDA device (torch.cuda.is_available() is False: a CPU-only build or no GPU); "
                         "drop device_map (install the GPU build with `make setup-gpu` on a CUDA machine)")
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        raise ValueError("device_map = 'auto' needs the accelerate package (pip install accelerate)")


@contextlib.contextmanager
def deterministic(seed: int = 0):
    """Seeded, deterministic-algorithm, no-grad inference; restores the previous torch settings on exit."""
    import torch

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def probe_image():
    """A small grey RGB image used to run one forward pass at load time (layer count, pooling checks)."""
    from PIL import Image

    return Image.new("RGB", (64, 64), (128, 128, 128))


def hidden_layer_names(n_hidden_states: int) -> list[str]:
    """Names for transformers' ``hidden_states``: "embeddings" (index 0), then "layer_1" ... "layer_L"."""
    return ["embeddings"] + [f"layer_{i}" for i in range(1, n_hidden_states)]


def block_layer_names(n_blocks: int) -> list[str]:
    """Names for block outputs with no embedding output (timm intermediates): "layer_1" ... "layer_n"."""
    return [f"layer_{i}" for i in range(1, n_blocks + 1)]
