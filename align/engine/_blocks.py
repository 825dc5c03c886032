"""Collecting the per-source-layer rows of a streamed grid into ``[x layers, y layers]`` blocks (shared by the
one-device and the sharded paths)."""

from __future__ import annotations

import numpy as np

from align.engine._layergrid import X_TO_Y


def add_source_rows(blocks: dict, rows: list[dict], s_i: int, direction: str) -> None:
    """Put the rows of one source layer ``s_i`` (per target group ``t_i``: ``{output name: [per-layer values]}``)
    into ``blocks[name][(x group, y group)][direction]``, stacked as ``[x layers, y layers]`` blocks."""
    for t_i, r in enumerate(rows):
        key = (s_i, t_i) if direction == X_TO_Y else (t_i, s_i)
        for k, v in r.items():
            if v:
                blocks.setdefault(k, {}).setdefault(key, {})[direction] = (
                    np.stack(v) if direction == X_TO_Y else np.stack(v, axis=1))
