"""Pooling: one vector per stimulus from a layer's token (or feature-map) activations.

Pure functions of torch tensors (torch is imported inside the functions, never at ``import align``). Every pooling
accumulates in float32 and returns float32, whatever the model's compute dtype.

Language (``hidden [b, t, d]`` with ``attention_mask [b, t]``, 1 = real token, 0 = padding):
  * ``mean``: mean over the real tokens (special tokens the tokenizer adds, such as BOS or [CLS]/[SEP], count as
    real tokens; padding never does, and non-finite values at padded positions are ignored).
  * ``last``: the last real token. Its index comes from the attention mask, so left and right padding give the same
    vector.
  * ``first``: the first real token (BOS or [CLS] for tokenizers that add one).

Vision (``hidden [b, t, d]`` token sequences, or ``[b, c, h, w]`` CNN feature maps):
  * ``cls``: token 0 (the class token). An error for feature maps and for token sequences without a class token.
  * ``mean``: mean over the patch tokens, i.e. tokens ``n_prefix:`` where the prefix is the class token plus any
    register / distillation tokens; for feature maps, the spatial mean over ``h, w``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

LANGUAGE_POOLINGS = ("mean", "last", "first")
VISION_POOLINGS = ("cls", "mean")
DEFAULT_POOLINGS = {"vision": ("cls", "mean"), "language": ("mean", "last")}


class PoolingError(ValueError):
    """A pooling that does not apply to a model (e.g. ``cls`` on a CNN) or to its inputs (a row with no tokens)."""


def check_poolings(poolings: str | Sequence[str] | None, modality: str) -> tuple[str, ...]:
    """Validate pooling names for a modality; None gives the default (vision: cls, mean; language: mean, last).

    Raises:
      PoolingError: an unknown name or a repeated one; the message lists the poolings the modality supports.
    """
    if poolings is None:
        return DEFAULT_POOLINGS[modality]
    if isinstance(poolings, str):
        poolings = (poolings,)
    allowed = VISION_POOLINGS if modality == "vision" else LANGUAGE_POOLINGS
    bad = [p for p in poolings if p not in allowed]
    if bad:
        raise PoolingError(f"{modality} models support poolings {list(allowed)}; got {bad}")
    if len(set(poolings)) != len(poolings):
        raise PoolingError(f"poolings {list(poolings)} repeat a name")
    if not poolings:
        raise PoolingError(f"no pooling requested; {modality} models support {list(allowed)}")
    return tuple(poolings)


# ----------------------------------------------------------------------------------------------- language


def _check_mask(hidden, attention_mask):
    if hidden.ndim != 3 or attention_mask.shape != hidden.shape[:2]:
        raise PoolingError(f"expected hidden [b, t, d] and attention_mask [b, t]; got {tuple(hidden.shape)} and "
                           f"{tuple(attention_mask.shape)}")
    real = attention_mask.bool()
    empty = (~real.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise PoolingError(f"rows {empty} of the batch have no real tokens (all padding); check the captions")
    return real


def masked_mean(hidden, attention_mask):
    """Mean over real tokens.

    Args:
      hidden: ``[b, t, d]`` token activations.
      attention_mask: ``[b, t]``, 1 for real tokens, 0 for padding (either side).

    Returns:
      ``[b, d]`` float32.
    """
    import torch

    real = _check_mask(hidden, attention_mask)
    h = torch.where(real[..., None], hidden.float(), 0.0)  # where, not multiply: NaN * 0 at padding would be NaN
    return h.sum(dim=1) / real.sum(dim=1, keepdim=True).float()


def last_token_index(attention_mask):
    """Index ``[b]`` of the last real token of each row, computed from the mask (right or left padding)."""
    import torch

    t = attention_mask.shape[1]
    positions = torch.arange(t, device=attention_mask.device)
    return torch.where(attention_mask.bool(), positions, -1).max(dim=1).values


def first_token_index(attention_mask):
    """Index ``[b]`` of the first real token of each row, computed from the mask (right or left padding)."""
    import torch

    t = attention_mask.shape[1]
    positions = torch.arange(t, device=attention_mask.device)
    return torch.where(attention_mask.bool(), positions, t).min(dim=1).values


def last_token(hidden, attention_mask):
    """The last real token of each row: ``[b, t, d] -> [b, d]`` float32."""
    import torch

    _check_mask(hidden, attention_mask)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_token_index(attention_mask)].float()


def first_token(hidden, attention_mask):
    """The first real token of each row: ``[b, t, d] -> [b, d]`` float32."""
    import torch

    _check_mask(hidden, attention_mask)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, first_token_index(attention_mask)].float()


_LANGUAGE = {"mean": masked_mean, "last": last_token, "first": first_token}


def pool_language(hidden_states: Sequence[Any], attention_mask, poolings: Sequence[str]) -> dict[str, list]:
    """Several poolings of every layer from one forward pass.

    Args:
      hidden_states: one ``[b, t, d]`` tensor per layer.
      attention_mask: ``[b, t]`` (1 = real token).
      poolings: names among ``mean``, ``last``, ``first``.

    Returns:
      pooling -> one ``[b, d]`` float32 tensor per layer.
    """
    check_poolings(poolings, "language")
    return {p: [_LANGUAGE[p](h, attention_mask) for h in hidden_states] for p in poolings}


# ------------------------------------------------------------------------------------------------- vision


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Where the patch tokens are in a vision transformer's token sequence.

    Attributes:
      has_cls: token 0 is a class token (``cls`` pooling allowed).
      n_prefix: number of non-patch tokens at the start (class token + register / distillation tokens); ``mean``
        pools tokens ``n_prefix:``.
    """

    has_cls: bool = True
    n_prefix: int = 1


def vision_cls(hidden, layout: TokenLayout = TokenLayout(), *, what: str = "this model"):
    """The class token: ``[b, t, d] -> [b, d]`` float32.

    Raises:
      PoolingError: for CNN feature maps ``[b, c, h, w]`` or models without a class token.
    """
    if hidden.ndim == 4:
        raise PoolingError(f"{what} is a CNN (feature maps [b, c, h, w]) and has no class token: "
                           f"use pooling 'mean' (spatial mean) instead of 'cls'")
    if hidden.ndim == 2:
        return hidden.float()
    if not layout.has_cls:
        raise PoolingError(f"{what} has no class token: use pooling 'mean' instead of 'cls'")
    return hidden[:, 0].float()


def vision_mean(hidden, layout: TokenLayout = TokenLayout()):
    """Mean of the patch tokens (``[b, t, d]``: tokens ``layout.n_prefix:``) or spatial mean (``[b, c, h, w]``).

    Returns:
      ``[b, d]`` (or ``[b, c]``) float32; a ``[b, d]`` input is returned as is.
    """
    if hidden.ndim == 4:
        return hidden.float().mean(dim=(2, 3))
    if hidden.ndim == 2:
        return hidden.float()
    if hidden.ndim != 3:
        raise PoolingError(f"expected [b, t, d] tokens or [b, c, h, w] feature maps; got shape {tuple(hidden.shape)}")
    patches = hidden[:, layout.n_prefix:]
    if patches.shape[1] == 0:
        raise PoolingError(f"no patch tokens left after {layout.n_prefix} prefix tokens (shape {tuple(hidden.shape)})")
    return patches.float().mean(dim=1)


def pool_vision(hidden_states: Sequence[Any], poolings: Sequence[str], layout: TokenLayout = TokenLayout(), *,
                what: str = "this model") -> dict[str, list]:
    """Several poolings of every layer from one forward pass.

    Args:
      hidden_states: one ``[b, t, d]`` (tokens) or ``[b, c, h, w]`` (feature maps) tensor per layer.
      poolings: names among ``cls``, ``mean``.
      layout: class / register tokens of token sequences.
      what: how to name the model in errors.

    Returns:
      pooling -> one ``[b, d]`` float32 tensor per layer.
    """
    check_poolings(poolings, "vision")
    out: dict[str, list] = {}
    for p in poolings:
        if p == "cls":
            out[p] = [vision_cls(h, layout, what=what) for h in hidden_states]
        else:
            out[p] = [vision_mean(h, layout) for h in hidden_states]
    return out


def to_numpy(pooled: Mapping[str, Sequence[Any]]) -> dict[str, list]:
    """pooling -> per-layer ``[b, d]`` float32 numpy arrays (moved to the CPU)."""
    return {p: [t.detach().float().cpu().numpy() for t in layers] for p, layers in pooled.items()}
