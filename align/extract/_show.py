"""``show_model``: the layers a model records, with output shapes from one forward pass on a dummy input."""

from __future__ import annotations

import dataclasses

from align.extract._spec import ModelSpec


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One recorded layer of a model.

    Attributes:
      index: depth index (0 = first stored layer).
      name: the name stores use (and ``layers =`` patterns match).
      shape: the raw output shape on one dummy input (``(1, tokens, d)``, ``(1, c, h, w)`` or ``(1, d)``), before
        pooling; pooled stores hold ``d`` (or ``c``) values per stimulus.
    """

    index: int
    name: str
    shape: tuple[int, ...]


def show_model(model: str | ModelSpec, *, modality: str | None = None, device: str = "cpu") -> tuple[ModelSpec,
                                                                                                      list[LayerInfo]]:
    """The layers ``extract`` would record for ``model``, with output shapes from one forward pass on a dummy input
    (a 64x64 grey image for vision models, the text ``"a photo"`` for language models).

    Loads the model (converting it first if it needs converting, see ``align models``); stores nothing.

    Args:
      model: a model name (``resolve_model``) or a ``ModelSpec``.
      modality: "vision" or "language", for Hugging Face ids outside align's catalog.
      device: torch device for the forward pass.

    Returns:
      (the materialized spec, one :class:`LayerInfo` per layer in depth order).
    """
    from align.extract._extract import load_encoder
    from align.extract._sources import resolve_model

    spec = resolve_model(model, modality=modality).materialize()
    encoder = load_encoder(spec, device=device, poolings=("mean",))
    shapes = encoder.output_shapes or [()] * len(encoder.layer_names)
    return spec, [LayerInfo(i, n, tuple(int(d) for d in s)) for i, (n, s) in enumerate(zip(encoder.layer_names,
                                                                                            shapes))]
