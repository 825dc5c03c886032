"""What the chosen ridge penalties say: a per-pair summary (median, shares at either end of the alpha grid) and the
warning given when too many choices sit at one end (the grid may be too narrow, or the targets unpredictable)."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

from align.stats import mean_valid


#: Default ridge penalties: 17 values log-spaced from 1e-3 to 1e5 (two per decade). Chosen per target column by
#: LOO on each training fold. The penalty is on unscaled, centered activations, so the useful range grows with the
#: feature scale; pass ``scale=True`` or wider ``alphas`` for activations with very large norms.
DEFAULT_ALPHAS = np.logspace(-3, 5, 17)


def alpha_summary(chosen, alphas, valid):
    """Median chosen alpha and the shares of (fold, target column) choices at the smallest and at the largest alpha
    of the grid, over the non-constant target columns."""
    cells = jnp.broadcast_to(valid[None, :], chosen.shape)
    median = jnp.nanmedian(jnp.where(cells, chosen, jnp.nan))
    low = mean_valid((chosen <= jnp.min(alphas)).astype(jnp.float32), cells, axis=(0, 1))
    high = mean_valid((chosen >= jnp.max(alphas)).astype(jnp.float32), cells, axis=(0, 1))
    return median, low, high


class AlphaGridWarning(UserWarning):
    """More than :data:`ALPHA_EDGE_WARN` of the ridge penalties chosen sit at one end of the alpha grid."""


#: Share of (fold, target) alpha choices at an end of the grid above which a warning is given.
ALPHA_EDGE_WARN = 0.25


def alpha_edge_message(low: float, high: float, where: str, alphas) -> str:
    """The text of an :class:`AlphaGridWarning`: ``where`` names the layer pair(s), ``low``/``high`` the largest
    shares of choices at the smallest/largest alpha."""
    a = np.asarray(alphas, dtype=np.float64)
    parts = []
    if low > ALPHA_EDGE_WARN:
        parts.append(f"up to {low:.0%} of the chosen ridge penalties are the smallest alpha ({a.min():.3g}): the grid "
                     "may cut off a weaker penalty (extend `alphas` downwards)")
    if high > ALPHA_EDGE_WARN:
        parts.append(f"up to {high:.0%} are the largest alpha ({a.max():.3g}): those targets are barely linearly "
                     "predictable from the source (the fit shrinks towards the training mean), or the features are "
                     "very large (extend `alphas` upwards, pass scale=True, or preprocess='zscore')")
    return f"linear_predictivity, {where}: " + "; ".join(parts)


def check_alphas(aux, layers_x, layers_y, kwargs) -> None:
    """Engine hook: one :class:`AlphaGridWarning` per grid direction naming the layer pairs where more than
    :data:`ALPHA_EDGE_WARN` of the chosen penalties sit at one end of the grid."""
    for direction, low in aux.get("alpha_low_share", {}).items():
        high = aux["alpha_high_share"][direction]
        low, high = np.nan_to_num(low), np.nan_to_num(high)
        bad = np.argwhere(np.maximum(low, high) > ALPHA_EDGE_WARN)
        if len(bad):
            src, dst = ("x", "y") if direction == "x_to_y" else ("y", "x")
            shown = ", ".join(f"{src} {layers_x[i] if src == 'x' else layers_y[j]} -> "
                              f"{dst} {layers_y[j] if dst == 'y' else layers_x[i]}" for i, j in bad[:4])
            more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
            where = f"{len(bad)} of {low.size} layer pairs ({direction}: {shown}{more})"
            warnings.warn(alpha_edge_message(float(low.max()), float(high.max()), where,
                                             kwargs.get("alphas", DEFAULT_ALPHAS)), AlphaGridWarning, stacklevel=4)
