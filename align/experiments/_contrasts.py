"""The items of the preference contrasts: for each item, its positive and negative (vision row, caption row) and
the aligned training pairs a ridge mapping is fitted on (see ``align.experiments._preference``)."""

from __future__ import annotations

import dataclasses

import numpy as np

from align.data import ExclusionReport
from align.data import make_report
from align.experiments._stores import rows_by_id


def item_folds(n: int, folds: int, seed: int) -> np.ndarray:
    """``[n]`` cross-fitting fold id per item: ``align.stats.kfold_ids`` (sklearn ``KFold(folds, shuffle=True,
    random_state=seed)``, as linear predictivity's folds)."""
    from align.stats import kfold_ids

    try:
        return kfold_ids(n, folds, seed)
    except ValueError as e:
        raise ValueError(f"experiment.folds = {folds} over {n} items: {e}") from None


def within_fold_derangement(folds: np.ndarray, seed: int) -> np.ndarray:
    """``[n]`` a partner for every item: another item of the same fold (a derangement within each fold)."""
    from align.experiments._aggregation import derangement

    partner = np.empty(len(folds), dtype=np.int64)
    for f in np.unique(folds):
        members = np.flatnonzero(folds == f)
        partner[members] = members[derangement(len(members), seed + int(f))]
    return partner


@dataclasses.dataclass
class ContrastItems:
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


def contrast_items(contrast: str, stimuli, vision, language, wrong, folds_seed: int, n_folds: int,
                   scored: ScoredPairs | None = None) -> tuple[ContrastItems, np.ndarray]:
    """Items of one contrast and their cross-fitting folds (``[n]`` fold id per item, ``item_folds``).

    ``vision``: the image store; ``language``: the caption store the items' caption rows index (every caption for
    ``scored``); ``wrong``: the wrong-caption store (``wrong_caption`` only); ``scored``: the ``scored`` contrast's
    pairs (``scored_caption_pairs``).
    """
    if contrast == "scored":
        from align.experiments._pairing import caption_rows

        ids = scored.ids
        x = rows_by_id(vision, ids)
        _, every = caption_rows(language, ids, "mean", align_by_id=True)
        if len(every) != len(ids):
            raise ValueError(f"{language.path} lacks the captions of {len(ids) - len(every)} images")
        high, low = scored.caption_ids("high"), scored.caption_ids("low")
        items = ContrastItems(ids=ids, train_x=x, train_y=every, owner=np.arange(len(ids)), x_pos=x,
                       y_pos=rows_by_id(language, high), x_neg=x, y_neg=rows_by_id(language, low),
                       labels={"caption_high": high, "caption_low": low})
        return items, item_folds(len(ids), n_folds, folds_seed)
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
        folds = item_folds(len(ids), n_folds, folds_seed)
        n = len(ids)
        items = ContrastItems(ids=ids, train_x=np.concatenate([pref, rej]), train_y=np.concatenate([cap, cap]),
                       owner=np.concatenate([np.arange(n), np.arange(n)]), x_pos=pref, y_pos=cap, x_neg=rej,
                       y_neg=cap)
        return items, folds
    ids = list(vision.stimulus_ids)
    x = np.arange(len(ids))
    y = _caption_row_of(language, ids)
    folds = item_folds(len(ids), n_folds, folds_seed)
    if contrast == "matched":
        partner = within_fold_derangement(folds, folds_seed)
        return ContrastItems(ids=ids, train_x=x, train_y=y, owner=x, x_pos=x, y_pos=y, x_neg=x[partner],
                      y_neg=y[partner]), folds
    # wrong_caption: the negative caption is the image's row in the wrong-caption store
    return ContrastItems(ids=ids, train_x=x, train_y=y, owner=x, x_pos=x, y_pos=y, x_neg=x,
                  y_neg=_caption_row_of(wrong, ids)), folds


def direction_arrays(contrast: str, direction: str, items: ContrastItems, X, Y, Y_neg):
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


def wrong_caption_set(stimuli):
    """The stimulus set whose one caption per image is its ``extra["wrong_caption"]`` (synthetic scenes)."""
    missing = [s.image_id for s in stimuli.stimuli if not s.extra.get("wrong_caption")]
    if missing:
        raise ValueError(f"contrast 'wrong_caption' needs extra['wrong_caption'] on every stimulus (synthetic scenes "
                         f"have it); {len(missing)} of {len(stimuli)} images of {stimuli.name!r} lack it, e.g. "
                         f"{missing[:3]}")
    items = [dataclasses.replace(s, captions=(s.extra["wrong_caption"],), caption_scores=None)
             for s in stimuli.stimuli]
    return dataclasses.replace(stimuli, name=f"{stimuli.name}-wrongcaption", stimuli=items, caption_score=None)
