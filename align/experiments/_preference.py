"""The preference experiment: does per-item alignment mirror which image–caption pairing is right or preferred?

A ridge mapping between one vision layer and one language layer is fitted on aligned training stimuli (both
directions: vision → language, ``x_to_y``, and language → vision, ``y_to_x``) and applied to held-out items
(cross-fitting: ``experiment.folds`` folds over items, every item scored by the model of the fold that held it
out). The per-item alignment score is the Pearson r, over features, between the predicted and the actual
embedding, both z-scored with the training fold's target means and standard deviations. Each contrast gives every
held-out item a "positive" and a "negative" score:

- ``matched`` (any image–caption set, e.g. COCO): the item's own image and caption vs a mismatched one — the
  partner of a random derangement within the held-out fold. ``x_to_y``: r(f(image), own caption) vs r(f(image),
  partner's caption); ``y_to_x``: r(g(caption), own image) vs r(g(caption), partner's image). Training: each item's
  image with its caption.
- ``wrong_caption`` (synthetic scenes, ``extra["wrong_caption"]``: the first caption with one attribute wrong): the
  correct caption (caption 0) vs the wrong one. ``x_to_y``: r(f(image), correct) vs r(f(image), wrong); ``y_to_x``:
  r(g(correct), image) vs r(g(wrong), image). Training: images with their correct caption.
- ``preferred`` (Pick-a-Pic pairs, ``stimuli.kind = "pick_a_pic"``): the preferred vs the rejected image of a
  caption. ``x_to_y``: r(f(preferred image), caption) vs r(f(rejected image), caption); ``y_to_x``: r(g(caption),
  preferred) vs r(g(caption), rejected). Training: both images of the training pairs, each with the caption.
- ``scored`` (captions with a per-caption score, e.g. a CLIP score: ``stimuli.kind`` "folder" or "coco" with
  ``stimuli.caption_score`` naming a field the captions file has): an image's highest-scored caption vs its
  lowest-scored one (``scored_caption_pairs``; ties for the highest or lowest score go to the earlier caption).
  ``x_to_y``: r(f(image), high caption) vs r(f(image), low caption); ``y_to_x``: r(g(high caption), image) vs
  r(g(low caption), image). Images with fewer than 2 captions, or whose captions all have the same score, have no
  contrast: they are left out of this contrast (training included), logged, counted in ``n_excluded`` of its rows
  and listed in ``<output>/exclusions.json``. Training: each image with the MEAN embedding of all its captions,
  whatever ``score.caption`` says. The mean is symmetric in the captions, so the mapping never sees which caption
  is the high or the low one of any image; a single caption (``score.caption = "first"``) can coincide with the
  high one of every image (files written sorted by score), and a mapping trained on high-scored captions would
  favour the positive by construction. The language stores hold every caption for this contrast (the stores
  ``score.caption = "mean"`` extracts, rows ``<image_id>#<k>``), next to the caption-0 stores of the others.

Layers: ``experiment.layers = "peak"`` takes, per direction, the peak layer pair of ``score.metrics[0]`` on the
aligned stimuli (from ``peaks_from`` or a grid computed here); ``[rx, ry]`` takes the layers at those relative depths.
Ridge: centered (training means), penalty per target column chosen from ``linear_predictivity``'s default alphas
by exact leave-one-out error on the training fold, as ``linear_predictivity`` does.
``score.preprocess`` (one option) applies to the layer grid that picks the peak layers; the contrast's ridge runs on
the raw features (its positive and negative targets come from different stores, which a per-store step would scale
differently), so its rows say ``preprocess = "none"``.

Summary rows (``quantity``): ``accuracy`` (forced choice: fraction of items whose positive score is higher, ties
count half; exact binomial p-value against 0.5, Clopper–Pearson interval), ``mean_difference`` (mean of positive −
negative; sign-flip permutation p-value with ``n_perm`` draws, bootstrap interval with ``n_boot``),
``mean_positive`` and ``mean_negative``. The per-item scores go to ``<output>/items.parquet`` (for ``scored`` with
the ids of the high and the low caption).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from align.config import RunConfig
from align.data import ExclusionReport
from align.data._report import make_report
from align.experiments._jobs import cached_job
from align.experiments._jobs import direction_peaks
from align.experiments._jobs import job_key
from align.experiments._jobs import open_stores
from align.experiments._jobs import pair_key
from align.experiments._jobs import read_peaks
from align.experiments._jobs import relative_depth
from align.experiments._jobs import rows_by_id
from align.experiments._jobs import store_identity
from align.experiments._jobs import write_exclusions

HIGHEST = lax.Precision.HIGHEST
ITEM_METRIC = "ridge_item_r"


def _log_default(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# ridge fit and per-item scores (pure functions)


@jax.jit
def ridge_fit(X, Y, alphas):
    """Ridge regression X -> Y with an intercept and one penalty per target column chosen by exact LOO.

    Args:
      X: ``[n, p]`` training predictors.
      Y: ``[n, q]`` training targets.
      alphas: ``[A]`` candidate penalties.

    Returns:
      (mu_x ``[p]``, mu_y ``[q]``, W ``[p, q]``): predictions are ``(X_new - mu_x) @ W + mu_y``.
    """
    X = jnp.asarray(X, jnp.float32)
    Y = jnp.asarray(Y, jnp.float32)
    n, p = X.shape
    mu_x, mu_y = jnp.mean(X, axis=0), jnp.mean(Y, axis=0)
    Xc, Yc = X - mu_x, Y - mu_y
    U, s, Vt = jnp.linalg.svd(Xc, full_matrices=False)
    keep = s > s[0] * max(n, p) * jnp.finfo(jnp.float32).eps
    U = U * keep.astype(jnp.float32)
    s2 = jnp.where(keep, s * s, 0.0)
    spans_all = jnp.sum(keep.astype(jnp.int32)) >= n - 1  # the dual regime: X spans the whole centered training space
    Z = jnp.matmul(U.T, Yc, precision=HIGHEST)
    R0 = jnp.where(spans_all, 0.0, 1.0) * (Yc - jnp.matmul(U, Z, precision=HIGHEST))
    lev0 = jnp.where(spans_all, 0.0, 1.0 - 1.0 / n - jnp.sum(U * U, axis=1))
    U2 = U * U

    def loo_error(alpha):
        g = alpha / (s2 + alpha)
        num = R0 + jnp.matmul(U, g[:, None] * Z, precision=HIGHEST)
        den = jnp.maximum(lev0 + jnp.matmul(U2, g, precision=HIGHEST), 1e-12)
        return jnp.mean((num / den[:, None]) ** 2, axis=0)

    errors = lax.map(loo_error, jnp.asarray(alphas, jnp.float32))  # [A, q]
    chosen = jnp.asarray(alphas, jnp.float32)[jnp.argmin(errors, axis=0)]
    shrink = jnp.where(keep, s, 0.0)[:, None] / (s2[:, None] + chosen[None, :])
    W = jnp.matmul(Vt.T, shrink * Z, precision=HIGHEST)
    return mu_x, mu_y, W


@jax.jit
def item_correlation(pred, actual, mu, sd):
    """Pearson r over features between z-scored predicted and actual embeddings, per item: ``[m, d] -> [m]``."""
    zp = (pred - mu) / sd
    za = (actual - mu) / sd
    zp = zp - jnp.mean(zp, axis=1, keepdims=True)
    za = za - jnp.mean(za, axis=1, keepdims=True)
    num = jnp.sum(zp * za, axis=1)
    den = jnp.sqrt(jnp.sum(zp * zp, axis=1) * jnp.sum(za * za, axis=1))
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """``[n]`` fold id per item: a seeded random split into ``folds`` near-equal folds."""
    if not 2 <= folds <= n:
        raise ValueError(f"experiment.folds = {folds} must be between 2 and the number of items ({n})")
    ids = np.empty(n, dtype=np.int64)
    for f, part in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), folds)):
        ids[part] = f
    return ids


def contrast_scores(train_src, train_tgt, owner, src_pos, tgt_pos, src_neg, tgt_neg, folds: np.ndarray,
                    alphas) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted positive and negative per-item scores.

    Args:
      train_src, train_tgt: ``[m, p]``, ``[m, q]`` aligned training pairs (source predicts target).
      owner: ``[m]`` the item each training pair belongs to (held out together with the item).
      src_pos, tgt_pos: ``[n, p]``, ``[n, q]`` the positive (source, target) of each item.
      src_neg, tgt_neg: ``[n, p]``, ``[n, q]`` the negative (source, target) of each item.
      folds: ``[n]`` fold id per item.
      alphas: ridge penalties.

    Returns:
      (positive ``[n]``, negative ``[n]``) scores, each from the model fitted without the item's fold.
    """
    n = len(folds)
    pos, neg = np.full(n, np.nan), np.full(n, np.nan)
    for f in np.unique(folds):
        test = np.flatnonzero(folds == f)
        train = np.flatnonzero(folds[owner] != f)
        mu_x, mu_y, W = ridge_fit(train_src[train], train_tgt[train], alphas)
        sd = jnp.std(jnp.asarray(train_tgt[train]), axis=0)
        sd = jnp.where(sd > 0, sd, 1.0)

        def predict(src):
            return jnp.matmul(jnp.asarray(src) - mu_x, W, precision=HIGHEST) + mu_y

        pos[test] = np.asarray(item_correlation(predict(src_pos[test]), jnp.asarray(tgt_pos[test]), mu_y, sd))
        neg[test] = np.asarray(item_correlation(predict(src_neg[test]), jnp.asarray(tgt_neg[test]), mu_y, sd))
    return pos, neg


def within_fold_derangement(folds: np.ndarray, seed: int) -> np.ndarray:
    """``[n]`` a partner for every item: another item of the same fold (a derangement within each fold)."""
    from align.experiments._aggregation import derangement

    partner = np.empty(len(folds), dtype=np.int64)
    for f in np.unique(folds):
        members = np.flatnonzero(folds == f)
        partner[members] = members[derangement(len(members), seed + int(f))]
    return partner


def contrast_summary(pos: np.ndarray, neg: np.ndarray, *, n_perm: int, n_boot: int, ci: float, seed: int) -> list[dict]:
    """Forced-choice accuracy, mean paired difference and the mean scores, with p-values and intervals."""
    from scipy.stats import binomtest

    diff = pos - neg
    n = len(diff)
    wins = float(np.sum(diff > 0) + 0.5 * np.sum(diff == 0))
    test = binomtest(int(round(wins)), n, 0.5)
    interval = test.proportion_ci(confidence_level=ci)
    rows = [{"quantity": "accuracy", "score": wins / n, "p_value": float(test.pvalue),
             "ci_low": float(interval.low), "ci_high": float(interval.high), "null_mean": 0.5}]
    rng = np.random.default_rng(seed)
    observed = float(diff.mean())
    p = ci_low = ci_high = np.nan
    if n_perm:
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, n))
        null = (signs * diff).mean(axis=1)
        p = float((1 + np.sum(np.abs(null) >= abs(observed) - 1e-15)) / (1 + n_perm))
    if n_boot:
        boot = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        ci_low, ci_high = (float(v) for v in np.quantile(boot, [(1 - ci) / 2, 1 - (1 - ci) / 2]))
    rows.append({"quantity": "mean_difference", "score": observed, "p_value": p, "ci_low": ci_low,
                 "ci_high": ci_high, "null_mean": 0.0})
    rows.append({"quantity": "mean_positive", "score": float(pos.mean())})
    rows.append({"quantity": "mean_negative", "score": float(neg.mean())})
    for r in rows:
        r["n"] = n
    return rows


# ----------------------------------------------------------------------------------------------------------------
# the experiment


@dataclasses.dataclass
class _Items:
    """A contrast's items as row indices into the vision store (x) and caption stores (y)."""

    ids: list[str]        # item ids
    train_x: np.ndarray   # [m] vision rows of the aligned training pairs
    train_y: np.ndarray | list[np.ndarray]  # [m] caption rows of the aligned training pairs, or per pair the
                                            # caption rows whose mean embedding is its caption ("scored")
    owner: np.ndarray     # [m] item of each training pair
    x_pos: np.ndarray     # [n] vision row of the positive
    y_pos: np.ndarray     # [n] caption row of the positive
    x_neg: np.ndarray     # [n] vision row of the negative
    y_neg: np.ndarray     # [n] caption row of the negative (in the wrong-caption store for "wrong_caption")
    labels: dict = dataclasses.field(default_factory=dict)  # extra per-item columns of items.parquet


@dataclasses.dataclass(frozen=True)
class ScoredPairs:
    """The ``scored`` contrast's items: per image, its highest- and lowest-scored caption.

    Attributes:
      ids: image ids with a contrast, in stimulus-set order.
      high: ``[n]`` index k (into ``Stimulus.captions``; caption id ``f"{image_id}#{k}"``) of the highest score.
      low: ``[n]`` index k of the lowest score.
      report: the images left out ("fewer_than_2_captions", "equal_scores").
    """

    ids: list[str]
    high: np.ndarray
    low: np.ndarray
    report: ExclusionReport

    def caption_ids(self, which: str) -> list[str]:
        """Caption ids of the ``"high"`` or the ``"low"`` captions, one per image."""
        ks = self.high if which == "high" else self.low
        return [f"{i}#{int(k)}" for i, k in zip(self.ids, ks)]


def scored_caption_pairs(stimuli) -> ScoredPairs:
    """Per image, its highest- and lowest-scored caption (``Stimulus.caption_scores``).

    Ties for the highest or the lowest score go to the earlier caption. Images with fewer than 2 captions or with
    all scores equal have no contrast: they are left out and reported (logged at WARNING when any are).

    Raises:
      ValueError: the set carries no caption scores (its captions file has no ``stimuli.caption_score`` field).
    """
    if stimuli.caption_score is None:
        raise ValueError(
            f"contrast 'scored' needs a per-caption score, but stimulus set {stimuli.name!r} "
            f"({stimuli.source or 'no source'}) carries none: its captions file has no score field. Add one (e.g. a "
            f"CLIP score per caption) and name it in stimuli.caption_score (default 'score'), or drop 'scored' "
            f"from experiment.contrasts")
    ids, high, low, single, equal = [], [], [], [], []
    for s in stimuli.stimuli:
        scores = np.asarray(s.caption_scores, dtype=np.float64)
        if len(scores) < 2:
            single.append(s.image_id)
        elif scores.max() == scores.min():
            equal.append(s.image_id)
        else:
            ids.append(s.image_id)
            high.append(int(np.argmax(scores)))
            low.append(int(np.argmin(scores)))
    report = make_report(f"scored({stimuli.caption_score})", len(stimuli), len(ids),
                         excluded={"fewer_than_2_captions": single, "equal_scores": equal})
    return ScoredPairs(ids=ids, high=np.asarray(high, dtype=np.int64), low=np.asarray(low, dtype=np.int64),
                       report=report)


def _caption_row_of(language, image_ids) -> np.ndarray:
    from align.experiments._pairing import caption_rows

    kept, rows = caption_rows(language, image_ids, "first", align_by_id=True)
    if len(kept) != len(image_ids):
        raise ValueError(f"{language.path} lacks the first caption of {len(image_ids) - len(kept)} images")
    return np.asarray([r[0] for r in rows], dtype=np.int64)


def _items(contrast: str, stimuli, vision, language, wrong, folds_seed: int, n_folds: int,
           scored: ScoredPairs | None = None):
    """Items of one contrast and their folds. ``language`` holds every caption for ``scored``."""
    if contrast == "scored":
        from align.experiments._pairing import caption_rows

        ids = scored.ids
        x = rows_by_id(vision, ids)
        _, every = caption_rows(language, ids, "mean", align_by_id=True)
        if len(every) != len(ids):
            raise ValueError(f"{language.path} lacks the captions of {len(ids) - len(every)} images")
        high, low = scored.caption_ids("high"), scored.caption_ids("low")
        items = _Items(ids=ids, train_x=x, train_y=every, owner=np.arange(len(ids)), x_pos=x,
                       y_pos=rows_by_id(language, high), x_neg=x, y_neg=rows_by_id(language, low),
                       labels={"caption_high": high, "caption_low": low})
        return items, fold_ids(len(ids), n_folds, folds_seed)
    if contrast == "preferred":
        pairs: dict[str, dict] = {}
        for s in stimuli.stimuli:
            if "pair_id" not in s.extra or "preferred" not in s.extra:
                raise ValueError(f"contrast 'preferred' needs a Pick-a-Pic set (stimuli.kind = 'pick_a_pic'); image "
                                 f"{s.image_id!r} of {stimuli.name!r} has no pair_id/preferred")
            pairs.setdefault(s.extra["pair_id"], {})[bool(s.extra["preferred"])] = s.image_id
        ids = [p for p, sides in pairs.items() if set(sides) == {True, False}]
        if len(ids) < len(pairs):
            raise ValueError(f"{len(pairs) - len(ids)} preference pairs lack a preferred or a rejected image")
        pref = rows_by_id(vision, [pairs[p][True] for p in ids])
        rej = rows_by_id(vision, [pairs[p][False] for p in ids])
        cap = _caption_row_of(language, [pairs[p][True] for p in ids])
        folds = fold_ids(len(ids), n_folds, folds_seed)
        n = len(ids)
        items = _Items(ids=ids, train_x=np.concatenate([pref, rej]), train_y=np.concatenate([cap, cap]),
                       owner=np.concatenate([np.arange(n), np.arange(n)]), x_pos=pref, y_pos=cap, x_neg=rej,
                       y_neg=cap)
        return items, folds
    ids = list(vision.stimulus_ids)
    x = np.arange(len(ids))
    y = _caption_row_of(language, ids)
    folds = fold_ids(len(ids), n_folds, folds_seed)
    if contrast == "matched":
        partner = within_fold_derangement(folds, folds_seed)
        return _Items(ids=ids, train_x=x, train_y=y, owner=x, x_pos=x, y_pos=y, x_neg=x[partner],
                      y_neg=y[partner]), folds
    # wrong_caption: the negative caption is the image's row in the wrong-caption store
    return _Items(ids=ids, train_x=x, train_y=y, owner=x, x_pos=x, y_pos=y, x_neg=x,
                  y_neg=_caption_row_of(wrong, ids)), folds


def _direction_arrays(contrast: str, direction: str, items: _Items, X, Y, Y_neg):
    """(train_src, train_tgt, src_pos, tgt_pos, src_neg, tgt_neg) for one direction."""
    from align.experiments._pairing import reduce_rows

    x_pos, y_pos, x_neg = X[items.x_pos], Y[items.y_pos], X[items.x_neg]
    y_neg = (Y_neg if contrast == "wrong_caption" else Y)[items.y_neg]
    y_train = Y[items.train_y] if isinstance(items.train_y, np.ndarray) else reduce_rows(Y, items.train_y)
    if direction == "x_to_y":  # vision predicts language
        if contrast == "preferred":
            return X[items.train_x], y_train, x_pos, y_pos, x_neg, y_pos
        return X[items.train_x], y_train, x_pos, y_pos, x_pos, y_neg
    if contrast == "preferred" or contrast == "matched":
        return y_train, X[items.train_x], y_pos, x_pos, y_pos, x_neg
    return y_train, X[items.train_x], y_pos, x_pos, y_neg, x_pos  # wrong_caption, scored


def direction_scores(contrast: str, direction: str, items: _Items, folds: np.ndarray, X, Y, Y_neg=None,
                     alphas=None) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted (positive ``[n]``, negative ``[n]``) scores of one contrast in one direction.

    ``X``: the vision layer ``[n_images, d_x]``; ``Y``: the caption layer ``[n_captions, d_y]`` the items' rows
    index (every caption for ``scored``); ``Y_neg``: the wrong-caption layer (``wrong_caption`` only).
    """
    from align.metrics import DEFAULT_ALPHAS

    arrays = _direction_arrays(contrast, direction, items, X, Y, Y_neg)
    return contrast_scores(*arrays[:2], items.owner, *arrays[2:], folds, DEFAULT_ALPHAS if alphas is None else alphas)


def _wrong_caption_set(stimuli):
    missing = [s.image_id for s in stimuli.stimuli if not s.extra.get("wrong_caption")]
    if missing:
        raise ValueError(f"contrast 'wrong_caption' needs extra['wrong_caption'] on every stimulus (synthetic scenes "
                         f"have it); {len(missing)} of {len(stimuli)} images of {stimuli.name!r} lack it, e.g. "
                         f"{missing[:3]}")
    items = [dataclasses.replace(s, captions=(s.extra["wrong_caption"],), caption_scores=None)
             for s in stimuli.stimuli]
    return dataclasses.replace(stimuli, name=f"{stimuli.name}-wrongcaption", stimuli=items, caption_score=None)


def _layers_for(cfg, vision, language, peaks, log, out) -> dict[str, tuple[int, int]]:
    """direction -> (vision layer, language layer) used by the ridge mapping."""
    ex = cfg.experiment
    if ex.layers != "peak":
        rx, ry = ex.layers
        pair = (int(round(rx * (vision.n_layers - 1))), int(round(ry * (language.n_layers - 1))))
        return {"x_to_y": pair, "y_to_x": pair}
    metric = cfg.score.metrics[0]
    pkey = pair_key(vision, language, metric)
    if peaks is not None:
        found = {k[5]: v for k, v in peaks.items() if k[:5] == pkey}
    else:
        from align.engine import pairwise
        from align.experiments._layerwise import label_grid
        from align.experiments._pairing import paired_layers

        def grid():
            _, xs, ys = paired_layers(vision, language, "first")
            return label_grid(pairwise(metric, xs, ys, constant_layers="skip",
                                       preprocess=cfg.score.preprocess_options[0]).to_frame(), vision, language, metric,
                              experiment="preference", extra={"quantity": "layer_grid"})

        key = job_key(kind="grid", x=store_identity(vision), y=store_identity(language), metric=metric,
                      preprocess=cfg.score.preprocess_options[0])
        table = cached_job(out / f"{key}.parquet", grid, label=f"layer grid {pkey}", log=log)
        found = direction_peaks(table)
    if not found:
        raise ValueError(f"no peak layer pair for {pkey} (experiment.peaks_from); run the layerwise config with the "
                         f"same models and metrics")
    if "symmetric" in found:
        return {"x_to_y": found["symmetric"], "y_to_x": found["symmetric"]}
    return found


def run_preference(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] = _log_default) -> Path:
    """Run a preference config; returns the path of the combined summary table (items in items.parquet, what
    the ``scored`` contrast left out in exclusions.json)."""
    from align.experiments._jobs import split_by_modality
    from align.experiments._layerwise import activation_root
    from align.experiments._layerwise import label_grid
    from align.experiments._layerwise import run_extract
    from align.experiments._stimuli_from_config import stimuli_from_config
    from align.metrics import DEFAULT_ALPHAS
    from align.results import write_results

    ex = cfg.experiment
    stimuli = stimuli_from_config(cfg.stimuli, activation_root(cfg))
    log(f"stimuli: {stimuli.name} ({len(stimuli)} images)")
    scored, exclusions = None, {}
    if "scored" in ex.contrasts:  # before any extraction: a set without scores, or too few contrasts, fails here
        scored = scored_caption_pairs(stimuli)
        exclusions["scored"] = scored.report.to_dict()
        if not scored.report.is_empty:
            log(f"  {scored.report.summary()}")
        if len(scored.ids) < max(ex.folds, 4):
            raise ValueError(f"contrast 'scored': only {len(scored.ids)} images of {stimuli.name!r} have captions with "
                             f"different scores ({scored.report.summary()}); experiment.folds = {ex.folds} needs at "
                             f"least {max(ex.folds, 4)}")
    first = dataclasses.replace(cfg, score=dataclasses.replace(cfg.score, caption="first"))
    vision, language = open_stores(run_extract(first, stimuli, progress=progress, log=log))
    wrong, every = {}, {}
    if "wrong_caption" in ex.contrasts:
        _, language_cfg = split_by_modality(first)
        _, wrong = open_stores(run_extract(language_cfg, _wrong_caption_set(stimuli), condition="wrong_caption",
                                           progress=progress, log=log))
    if scored is not None:  # every caption: the stores score.caption = "mean" extracts
        _, language_cfg = split_by_modality(cfg)
        all_captions = dataclasses.replace(language_cfg, score=dataclasses.replace(cfg.score, caption="mean"))
        _, every = open_stores(run_extract(all_captions, stimuli, progress=progress, log=log))
    peaks = (read_peaks(ex.peaks_from, stimuli.name, log=log, preprocess=cfg.score.preprocess_options[0])
             if ex.peaks_from and ex.layers == "peak" else None)
    out = cfg.output_dir / "preference"
    fingerprint = cfg.fingerprint("stimuli", "models", "extract", "score", "experiment")
    summaries, item_frames = [], []
    for vk, vs in vision.items():
        for lk, ls in language.items():
            at = _layers_for(cfg, vs, ls, peaks, log, out)
            for contrast in ex.contrasts:
                ws = wrong.get(lk)
                ys = every[lk] if contrast == "scored" else ls  # the caption store the contrast's rows index
                scored_key = {} if contrast != "scored" else {
                    "e": store_identity(ys), "pick": job_key(ids=scored.ids, high=scored.high.tolist(),
                                                             low=scored.low.tolist())}
                key = job_key(kind="preference", contrast=contrast, x=store_identity(vs), y=store_identity(ls),
                              w=None if ws is None else store_identity(ws), at=sorted(at.items()), folds=ex.folds,
                              seed=ex.seed, n_perm=ex.n_perm, n_boot=ex.n_boot, ci=ex.ci, **scored_key)
                items_path = out / f"{key}.items.parquet"

                def compute(contrast=contrast, ws=ws, vs=vs, ys=ys, items_path=items_path):
                    items, folds = _items(contrast, stimuli, vs, ys, ws, ex.seed, ex.folds, scored)
                    rows, per_item = [], []
                    for d, (i, j) in sorted(at.items()):
                        X, Y = vs.layer(i), ys.layer(j)
                        Y_neg = ws.layer(j) if ws is not None else None
                        pos, neg = direction_scores(contrast, d, items, folds, X, Y, Y_neg, DEFAULT_ALPHAS)
                        for r in contrast_summary(pos, neg, n_perm=ex.n_perm, n_boot=ex.n_boot, ci=ex.ci,
                                                  seed=ex.seed):
                            rows.append({"direction": d, "layer_x": i, "layer_y": j, **r})
                        per_item.append(pd.DataFrame({"item_id": items.ids, "fold": folds, "direction": d,
                                                      "layer_x": i, "layer_y": j, "positive": pos, "negative": neg,
                                                      **items.labels}))
                    frame = pd.DataFrame(rows)
                    frame["rel_depth_x"] = [relative_depth(i, vs.n_layers) for i in frame["layer_x"]]
                    frame["rel_depth_y"] = [relative_depth(j, ys.n_layers) for j in frame["layer_y"]]
                    # accuracy and item scores (ridge r): higher = the matched/preferred side is more aligned
                    extra = {"contrast": contrast, "config_fingerprint": fingerprint, "higher_is_more_aligned": True,
                             "preprocess": "none"}  # the contrast's ridge runs on raw features (see module doc)
                    if contrast == "scored":
                        extra["n_excluded"] = scored.report.n_excluded
                    frame = label_grid(frame, vs, ys, ITEM_METRIC, experiment="preference", extra=extra,
                                       caption="mean" if contrast == "scored" else "first")  # training caption
                    items_frame = pd.concat(per_item, ignore_index=True)
                    for col in ("model_x", "pooling_x", "model_y", "pooling_y", "dataset"):
                        items_frame[col] = frame[col].iloc[0]
                    items_frame["contrast"] = contrast
                    items_path.parent.mkdir(parents=True, exist_ok=True)
                    items_frame.to_parquet(items_path.with_suffix(".tmp"), index=False)
                    items_path.with_suffix(".tmp").replace(items_path)
                    return frame

                label = f"{contrast}: {vk[0]}({vk[1]}) x {lk[0]}({lk[1]}) layers {dict(at)}"
                summaries.append(cached_job(out / f"{key}.parquet", compute, label=label, log=log))
                item_frames.append(pd.read_parquet(items_path))
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    write_exclusions(cfg, exclusions)
    pd.concat(item_frames, ignore_index=True).to_parquet(cfg.output_dir / "items.parquet", index=False)
    return write_results(pd.concat(summaries, ignore_index=True), cfg.output_dir / "results.parquet")
