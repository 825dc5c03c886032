"""The checks of the metric battery (see :func:`align.engine.check_metric` for the list): transformed pairs of one
shape scored in one jitted, vmapped call; the engine's grid (jit = eager, no recompilation, padding); degenerate
input. Each returns :class:`~align.engine._report.CheckResult` objects with the numbers behind them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from align.engine._grid import pairwise
from align.engine._jit import compiled_programs
from align.engine._kwargs import hashable
from align.engine._kwargs import split_kwargs
from align.engine._layergrid import SYMMETRIC
from align.engine._layergrid import X_TO_Y
from align.engine._layergrid import Y_TO_X
from align.engine._parts import parts_of
from align.engine._plan import score_of
from align.engine._report import FAIL
from align.engine._report import PASS
from align.engine._report import SKIP
from align.engine._report import CheckResult
from align.metrics import Metric

#: Transformations ``not_invariant_to`` may name (the battery applies each to X).
NON_INVARIANCES = ("anisotropic_scale", "permute_rows_of_one", "elementwise_nonlinear")

#: Stimuli and widths of the transformed pairs (one shape, one vmapped call).
N_VARIANTS, WIDTH = 40, 10
#: Stimuli and layer widths of the padding check: within a factor 2, so the engine pads them to one width.
N_PADDING, PAD_WIDTHS, PAD_TARGET_WIDTH = 64, (32, 40, 48), 48
#: Absolute tolerance of invariances, symmetry and jit = eager (float32 metrics on tiny data).
TOL = 1e-4
#: Relative tolerance of the padding check: ``|padded - unpadded| <= PAD_TOL * (1 + |unpadded|)``.
PAD_TOL = 1e-5
#: Factors of the scale_extremes check, applied to X, to Y and to both.
SCALES = (1e-12, 1e-6, 1.0, 1e4, 1e8)
#: Relative tolerance of the scale_extremes check: ``|scaled - base| <= SCALE_TOL * (1 + |base|)``.
SCALE_TOL = 1e-4


# ----------------------------------------------------------------------------------------------------------------
# data


def _orthogonal(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _related(seed: int, n: int, widths) -> list[np.ndarray]:
    """Layers sharing a 4-dimensional latent plus noise: ``[n, d]`` float32 for each width."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    return [(z @ rng.normal(size=(4, d)) + 0.5 * rng.normal(size=(n, d))).astype(np.float32) for d in widths]


def _variants(n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named (X, Y) pairs of one shape: the base pair, identity, swap, transformations of either side."""
    rng = np.random.default_rng(1)
    X, Y = _related(0, n, (WIDTH, WIDTH))
    perm = rng.permutation(n)
    aniso = np.logspace(-1.5, 1.5, WIDTH)[rng.permutation(WIDTH)]
    transforms = {
        "rotation": lambda A: A @ _orthogonal(rng, A.shape[1]),
        "isotropic_scale": lambda A: 3.7 * A,
        "translation": lambda A: A + rng.normal(size=(1, A.shape[1])) * 5.0,
    }
    out = {"base": (X, Y), "identity": (X, X), "swap": (Y, X), "stimulus_order": (X[perm], Y[perm])}
    for name, fn in transforms.items():
        out[f"{name}:x"] = (fn(X), Y)
        out[f"{name}:y"] = (X, fn(Y))
    out["not:anisotropic_scale"] = (X * aniso, Y)
    out["not:permute_rows_of_one"] = (X, Y[perm])
    out["not:elementwise_nonlinear"] = (np.exp(X), Y)
    for c in SCALES:  # scaled in float64, then rounded once to float32
        sx, sy = X.astype(np.float64) * c, Y.astype(np.float64) * c
        out[f"scale:{c:g}:x"], out[f"scale:{c:g}:y"], out[f"scale:{c:g}:both"] = (sx, Y), (X, sy), (sx, sy)
    return {k: (np.asarray(a, np.float32), np.asarray(b, np.float32)) for k, (a, b) in out.items()}


def _pair_fn(metric: Metric, kwargs: Mapping[str, Any]):
    """``score(X, Y)`` of one pair: prepare both sides, compare, take ``"score"`` from a dict result."""
    prep_kw, comp_kw = metric.split_kwargs(kwargs)
    prepare = metric.prepare

    def score(X, Y):
        px, py = (prepare(X, **prep_kw), prepare(Y, **prep_kw)) if prepare else (X, Y)
        return score_of(metric.compare(px, py, **comp_kw))

    return score


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.6f}"


def _error(e: BaseException) -> str:
    return f"raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


# ----------------------------------------------------------------------------------------------------------------
# checks on the transformed pairs (one vmapped call)


#: Jitted, vmapped pair functions by (prepare, compare, keyword arguments), so a metric checked again (e.g. the same
#: functions under other declarations) does not recompile.
_VARIANT_FNS: dict = {}


def _variant_fn(metric: Metric, kwargs: dict):
    key = (metric.prepare, metric.compare, hashable({**metric.defaults, **kwargs}))
    if key not in _VARIANT_FNS:
        _VARIANT_FNS[key] = jax.jit(jax.vmap(_pair_fn(metric, kwargs)))
    return _VARIANT_FNS[key]


def variant_checks(metric: Metric, kwargs: dict, n: int) -> list[CheckResult]:
    try:
        variants = _variants(n)
        xs = jnp.stack([v[0] for v in variants.values()])
        ys = jnp.stack([v[1] for v in variants.values()])
        with jax.default_matmul_precision("highest"):
            values = _variant_fn(metric, kwargs)(xs, ys)
        s = dict(zip(variants, np.asarray(values, dtype=np.float64)))
    except Exception as e:  # a compare that cannot be traced or vmapped fails every check that needs it
        names = ["identity", "symmetry", "bounds", "invariances", "non_invariance", "scale_extremes"]
        return [CheckResult(name, FAIL, f"scoring the transformed pairs (jit + vmap) {_error(e)}") for name in names]

    out = [_identity_check(metric, s)]
    if metric.symmetric:
        d = abs(s["swap"] - s["base"])
        out.append(CheckResult("symmetry", PASS if d <= TOL else FAIL,
                               f"score(X, Y) = {_fmt(s['base'])}, score(Y, X) = {_fmt(s['swap'])}, |diff| = {_fmt(d)}",
                               {"xy": s["base"], "yx": s["swap"]}))
    else:
        out.append(CheckResult("symmetry", SKIP, "declared asymmetric (symmetric=False)"))
    scaled = {k: v for k, v in s.items() if k.startswith("scale:")}  # checked by scale_extremes only
    s = {k: v for k, v in s.items() if k not in scaled}
    if metric.bounds is not None:
        lo, hi = metric.bounds
        values = np.array(list(s.values()))
        bad = [k for k, v in s.items() if not (np.isfinite(v) and lo - 1e-5 <= v <= hi + 1e-5)]
        out.append(CheckResult("bounds", FAIL if bad else PASS,
                               f"{len(values)} scores in [{_fmt(np.nanmin(values))}, {_fmt(np.nanmax(values))}], "
                               f"declared [{lo}, {hi}]" + (f"; outside or not finite: {bad}" if bad else ""),
                               {"min": float(np.nanmin(values)), "max": float(np.nanmax(values))}))
    else:
        out.append(CheckResult("bounds", SKIP, "declares no bounds"))
    feature = sorted(metric.invariances - {"stimulus_order"})
    for inv in feature:
        d = max(abs(s[f"{inv}:x"] - s["base"]), abs(s[f"{inv}:y"] - s["base"]))
        out.append(CheckResult(f"invariance:{inv}", PASS if d <= TOL else FAIL,
                               f"base {_fmt(s['base'])}; {inv} of X {_fmt(s[f'{inv}:x'])}, of Y "
                               f"{_fmt(s[f'{inv}:y'])}; max |diff| = {_fmt(d)} (tolerance {TOL})",
                               {"base": s["base"], "x": s[f"{inv}:x"], "y": s[f"{inv}:y"], "max_diff": d}))
    if not feature:
        out.append(CheckResult("invariances", SKIP, "declares no rotation, scale or translation invariance"))
    if "stimulus_order" in metric.invariances:
        d = abs(s["stimulus_order"] - s["base"])
        out.append(CheckResult("invariance:stimulus_order", PASS if d <= TOL else FAIL,
                               f"base {_fmt(s['base'])}, rows of both permuted {_fmt(s['stimulus_order'])}, "
                               f"|diff| = {_fmt(d)}", {"base": s["base"], "permuted": s["stimulus_order"]}))
    else:
        out.append(CheckResult("invariance:stimulus_order", SKIP, "does not declare stimulus-order invariance"))
    t = metric.not_invariant_to
    if t is None:
        out.append(CheckResult("non_invariance", SKIP, "declares no not_invariant_to"))
    elif t not in NON_INVARIANCES:
        out.append(CheckResult(f"non_invariance:{t}", FAIL, f"not_invariant_to={t!r} is not one the battery can "
                               f"apply; use one of {NON_INVARIANCES}"))
    else:
        d = abs(s[f"not:{t}"] - s["base"])
        out.append(CheckResult(f"non_invariance:{t}", PASS if d > 1e-3 else FAIL,
                               f"base {_fmt(s['base'])}, after {t} {_fmt(s[f'not:{t}'])}, |diff| = {_fmt(d)} "
                               "(must exceed 1e-3)", {"base": s["base"], "transformed": s[f"not:{t}"]}))
    out.append(_scale_check(metric, s["base"], scaled))
    return out


def _scale_check(metric: Metric, base: float, scaled: dict) -> CheckResult:
    """``scale_extremes``: every pair of :data:`SCALES` (keys ``scale:<factor>:<x|y|both>``) scores as ``base``."""
    if "isotropic_scale" not in metric.invariances:
        return CheckResult("scale_extremes", SKIP, "does not declare isotropic_scale invariance")
    gaps = {k.removeprefix("scale:"): abs(v - base) / (1 + abs(base)) if np.isfinite(v) else np.inf
            for k, v in scaled.items()}
    bad = {k: scaled[f"scale:{k}"] for k, g in gaps.items() if not g <= SCALE_TOL}
    worst = max(gaps.values())
    detail = (f"X, Y and both scaled by {', '.join(f'{c:g}' for c in SCALES)}: max rel. diff from base "
              f"{_fmt(base)} is {_fmt(worst)} (tolerance {SCALE_TOL})")
    if bad:
        shown = ", ".join(f"{k} -> {_fmt(v)}" for k, v in list(bad.items())[:6])
        detail += (f"; off: {shown}; compute in a scaled form (bring each layer to unit magnitude, e.g. "
                   "align.metrics._kernels.unit_scale, before squaring)")
    return CheckResult("scale_extremes", FAIL if bad else PASS, detail,
                       {"base": base, "max_rel_diff": float(worst), **{k: float(v) for k, v in bad.items()}})


def _identity_check(metric: Metric, s: dict) -> CheckResult:
    ident, base = s["identity"], s["base"]
    higher = metric.higher_is_more_aligned
    if metric.symmetric and metric.bounds is not None:
        top = metric.bounds[1] if higher else metric.bounds[0]
        ok = abs(ident - top) <= 1e-3
        detail = f"score(X, X) = {_fmt(ident)}, top of the bounds {top} (tolerance 1e-3)"
    else:
        ok = (ident > 0.9 if higher else ident < 0.1) and (ident >= base if higher else ident <= base)
        detail = (f"score(X, X) = {_fmt(ident)} must be {'> 0.9' if higher else '< 0.1'} and at least as aligned as "
                  f"a related pair ({_fmt(base)})")
    return CheckResult("identity", PASS if ok else FAIL, detail, {"identity": ident, "base": base})


# ----------------------------------------------------------------------------------------------------------------
# checks through the engine


def _grid_scores(grid) -> dict[str, np.ndarray]:
    return dict(grid.scores)


def _engine(metric: Metric, kwargs: dict, Xs, Ys, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pairwise(metric, Xs, Ys, metric_kwargs=kwargs, progress=False, preprocess="none", **options)


def _cache_sizes() -> int:
    return sum(compiled_programs().values())


def engine_checks(metric: Metric, kwargs: dict, n: int) -> list[CheckResult]:
    """jit = eager, no recompilation and padding, from layers of widths PAD_WIDTHS (+ one zero-padded copy)."""
    *xs, y = _related(2, n, PAD_WIDTHS + (PAD_TARGET_WIDTH,))
    widest = PAD_WIDTHS[-1]
    layers = xs + [np.pad(xs[0], ((0, 0), (0, widest - xs[0].shape[1])))]  # the first layer with zero columns
    try:
        batched = _grid_scores(_engine(metric, kwargs, layers, [y]))
    except Exception as e:
        msg = f"the engine (align.pairwise) {_error(e)}"
        return [CheckResult(name, FAIL, msg) for name in ("jit_equals_eager", "no_recompilation", "padding")]
    return [_eager_check(metric, kwargs, layers, y, batched), _recompile_check(metric, kwargs, n),
            _padding_check(metric, kwargs, layers, y, batched)]


def _eager_check(metric, kwargs, layers, y, batched) -> CheckResult:
    prep_kw, comp_kw = metric.split_kwargs(kwargs)
    i = len(PAD_WIDTHS) - 1  # the widest layer: never padded by the engine
    try:
        with jax.default_matmul_precision("highest"):  # not under jit (only the metric's own inner jits)
            px, py = (metric.prepare(jnp.asarray(a), **prep_kw) if metric.prepare else jnp.asarray(a)
                      for a in (layers[i], y))

            def score(a, b):
                return float(score_of(metric.compare(a, b, **comp_kw)))

            eager = {SYMMETRIC: score(px, py)} if metric.symmetric else {
                X_TO_Y: score(px, py), Y_TO_X: score(py, px)}
    except Exception as e:
        return CheckResult("jit_equals_eager", FAIL, f"the metric without jit {_error(e)}")
    diffs = {d: abs(batched[d][i, 0] - v) for d, v in eager.items()}
    worst = max(diffs.values())
    ok = all(abs(batched[d][i, 0] - v) <= TOL * (1 + abs(v)) for d, v in eager.items())
    shown = ", ".join(f"{d}: engine {_fmt(batched[d][i, 0])}, eager {_fmt(v)}" for d, v in eager.items())
    return CheckResult("jit_equals_eager", PASS if ok else FAIL, f"{shown}; max |diff| = {_fmt(worst)}",
                       {"max_diff": worst})


def _recompile_check(metric, kwargs, n) -> CheckResult:
    before = _cache_sizes()
    *xs, y = _related(3, n, PAD_WIDTHS + (PAD_TARGET_WIDTH,))
    xs.append(np.pad(xs[0], ((0, 0), (0, PAD_WIDTHS[-1] - xs[0].shape[1]))))
    try:
        _engine(metric, kwargs, xs, [y])
    except Exception as e:
        return CheckResult("no_recompilation", FAIL, f"a second grid {_error(e)}")
    new = _cache_sizes() - before
    return CheckResult("no_recompilation", PASS if new == 0 else FAIL,
                       f"a second grid of the same shapes with fresh data compiled {new} new program(s)",
                       {"new_programs": float(new)})


def _padding_check(metric, kwargs, layers, y, batched) -> CheckResult:
    """Padded (by the engine) vs unpadded scores, and the score of a layer with zero columns appended.

    ``layers`` are ``[X32, X40, X48, X32 + 16 zero columns]``. Where the engine pads (a metric declaring
    ``pad_invariant`` whose prepared shape depends on the width), the unpadded reference is one pair at a time
    (``batched=False``); elsewhere the batched scores of the narrower layers are already unpadded.
    """
    k = len(PAD_WIDTHS) - 1  # the layers narrower than the widest
    widths = "/".join(str(w) for w in PAD_WIDTHS)
    kw = split_kwargs(metric, kwargs)
    parts = parts_of(metric, layers, kw)
    padded = any(p.pad_to is not None and any(g[0].shape[1] != p.pad_to for g in p.groups) for p in parts)

    def gap(a, b):
        return float(np.max(np.abs(a - b) / (1 + np.abs(b)))) if np.all(np.isfinite(a) & np.isfinite(b)) else np.inf

    if padded:
        try:
            ref = _grid_scores(_engine(metric, kwargs, layers[:k], [y], batched=False))
        except Exception as e:
            return CheckResult("padding", FAIL, f"the engine one pair at a time (batched=False) {_error(e)}")
        batching = max(gap(batched[d][:k, 0], ref[d][:, 0]) for d in ref)
        how = f"batched, zero-padded to {PAD_WIDTHS[-1]} by the engine, vs one pair at a time unpadded: max rel. " \
              f"diff {_fmt(batching)}"
    else:
        ref = {d: v[:k] for d, v in batched.items()}
        batching = 0.0
        how = "batched without padding (" + ("prepared shape does not depend on the width" if metric.pad_invariant
                                             else "split by width") + ")"
    zeros = max(gap(batched[d][-1:, 0], ref[d][:1, 0]) for d in ref)
    values = {"padded_by_engine": float(padded), "batched_vs_unpadded": batching, "zero_columns": zeros}
    shift = f"{PAD_WIDTHS[-1] - PAD_WIDTHS[0]} zero columns appended to a layer change its score by {_fmt(zeros)}"
    if metric.pad_invariant:
        ok = batching <= PAD_TOL and zeros <= PAD_TOL
        detail = f"declares pad_invariant=True; widths {widths} {how}; {shift} (tolerance {PAD_TOL}, relative)"
        if not ok:
            detail += "; the score depends on zero feature columns: declare pad_invariant=False"
    else:
        ok = not padded
        detail = (f"not declared pad_invariant; widths {widths} {how}" + ("" if ok else ", but the ENGINE PADDED IT")
                  + f"; {shift}")
    return CheckResult("padding", PASS if ok else FAIL, detail, values)


def degenerate_check(metric: Metric, kwargs: dict) -> CheckResult:
    X, Y = _related(6, max(12, metric.min_n + 2), (6, 5))
    bad = X.copy()
    bad[1, 1] = np.nan
    small = metric.min_n - 1
    cases = {"a NaN value": ([bad], [Y]), "row counts that differ": ([X], [Y[:-1]]),
             f"{small} stimuli (min_n = {metric.min_n})": ([X[:small]], [Y[:small]])}
    wrong = []
    for what, (xs, ys) in cases.items():
        try:
            _engine(metric, kwargs, xs, ys)
            wrong.append(f"{what}: no error")
        except ValueError:
            pass
        except Exception as e:
            wrong.append(f"{what}: {type(e).__name__} instead of a ValueError")
    return CheckResult("degenerate_input", FAIL if wrong else PASS,
                       "; ".join(wrong) if wrong else f"ValueError for {', '.join(cases)}")
