"""The findings of issue 5 (and the depth asymmetry), as a table of definitions: what each claims, which results
table and quantity it reads, the metric that decides it, and the test that decides whether it holds per case.

Each definition's ``rows`` turns its table into one row per case (model pair, metric, direction, condition) with a
boolean ``holds``; ``summary`` states the statistic from those rows. ``findings.decide`` applies them and says why
when a finding cannot be computed (a table or a quantity missing) instead of printing NaN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

LP = "linear_predictivity"


class NotComputed(Exception):
    """A finding's quantity is not in the results (the message says why)."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One finding: its claim, where it reads, and the test that decides it.

    Attributes:
      id: its number in the report.
      claim: the statement tested.
      source: results table it reads, relative to the results folder (e.g. ``"layerwise/results.parquet"``).
      quantity: what it reads from the table (rows' ``quantity``, conditions).
      metric: the metric whose cases decide the verdict (others are shown beside it).
      criterion: when one case holds.
      rows: ``(table, results folder) -> cases`` with a boolean ``holds`` column; raises NotComputed.
      summary: ``cases of the deciding metric -> statistic text``.
      parts: conditions that must each hold (the verdict is the worst of theirs); empty = all cases at once.
      missing: why it cannot be computed when the deciding metric has no cases.
    """

    id: int
    claim: str
    source: str
    quantity: str
    metric: str
    criterion: str
    rows: Callable[[pd.DataFrame, object], pd.DataFrame]
    summary: Callable[[pd.DataFrame, pd.DataFrame], str]
    parts: tuple[str, ...] = ()
    missing: str = ""


VERDICT_ORDER = ("does not hold", "not computed", "partly holds", "holds")


def verdict(ok: pd.Series) -> str:
    """"holds" when at least 75% of the cases hold, "partly holds" for 50-75%, else "does not hold"."""
    if len(ok) == 0:
        return "not computed"
    share = float(np.mean(ok))
    return "holds" if share >= 0.75 else "partly holds" if share >= 0.5 else "does not hold"


def part_verdicts(rows: pd.DataFrame, parts: tuple[str, ...]) -> list[str]:
    """The verdict of each condition in ``parts`` (prefixes of ``rows.condition``)."""
    return [verdict(of(rows, k).holds) for k in parts]


def pct(values: pd.Series, how: str = "median") -> str:
    """``+12.3%`` of a statistic of ``values``, or "n/a (no rows)"."""
    return f"{getattr(values, how)():+.1%}" if len(values.dropna()) else "n/a (no rows)"


def base(metric) -> pd.Series | str:
    return metric.str.split("(").str[0] if isinstance(metric, pd.Series) else str(metric).split("(")[0]


def pair(frame: pd.DataFrame) -> pd.Series:
    return frame["model_x"] + " x " + frame["model_y"]


# ------------------------------------------------------------------------------------------------ (1), (2)


def rise_rows(table: pd.DataFrame, results) -> pd.DataFrame:
    from align.results import higher_is_more_aligned
    from align.results import peak_rows

    rows = []
    for (mx, my, metric, d), g in table.groupby(["model_x", "model_y", "metric", "direction"], sort=False):
        # every "best" honours the metric's direction (the minimum of a distance), and a rise is a gain in alignment
        peak = peak_rows(g, [])
        if not len(peak):  # no layer pair has a score
            continue
        best = peak.iloc[0]
        sign = 1.0 if higher_is_more_aligned(g) else -1.0
        # a layer whose activations are constant (DINOv2's CLS token at the embedding output) scores NaN: the
        # curve starts at the first layer with a score
        curve_x = peak_rows(g, ["rel_depth_x"]).set_index("rel_depth_x").score
        curve_y = peak_rows(g, ["rel_depth_y"]).set_index("rel_depth_y").score
        rise_x = sign * (curve_x.loc[best.rel_depth_x] - curve_x.iloc[0])
        rise_y = sign * (curve_y.loc[best.rel_depth_y] - curve_y.iloc[0])
        mid_late = best.rel_depth_x >= 0.4 and best.rel_depth_y >= 0.4
        rises = rise_x >= 0.1 * abs(best.score) and rise_y >= 0.1 * abs(best.score)
        rows.append({"model pair": f"{mx} x {my}", "metric": base(metric), "direction": d,
                     "peak": float(best.score), "peak depth (vision)": float(best.rel_depth_x),
                     "peak depth (language)": float(best.rel_depth_y),
                     "first scored vision depth": float(curve_x.index[0]),
                     "best there": float(curve_x.iloc[0]),
                     "best at language depth 0": float(curve_y.iloc[0]), "mid-to-late": bool(mid_late),
                     "rises": bool(rises), "holds": bool(mid_late and rises)})
    return pd.DataFrame(rows, columns=["model pair", "metric", "direction", "holds"] if not rows else None)


def rise_summary(lp: pd.DataFrame, rows: pd.DataFrame) -> str:
    other = rows[rows.metric != LP]
    return (f"{int(lp.holds.sum())} of {len(lp)} linear-predictivity cases meet the criterion "
            f"(CKA: {int(other.holds.sum())} of {len(other)}); median peak depth vision "
            f"{lp['peak depth (vision)'].median():.2f}, language {lp['peak depth (language)'].median():.2f}")


def null_rows(null: pd.DataFrame, results) -> pd.DataFrame:
    rows = pd.DataFrame({"model pair": pair(null), "metric": base(null.metric), "direction": null.direction,
                         "observed": null.score, "null mean": null.null_mean,
                         "null std": null.null_std if "null_std" in null else np.nan, "p": null.p_value,
                         "permutations": null.n_perm if "n_perm" in null else np.nan})
    rows["holds"] = (rows["null mean"].abs() <= 0.05) & (rows.p <= 0.05)
    return rows


def null_summary(lp: pd.DataFrame, rows: pd.DataFrame) -> str:
    cka = rows[rows.metric != LP]
    text = (f"linear predictivity at the peak pair: null mean {lp['null mean'].mean():+.3f} "
            f"(max |.| {lp['null mean'].abs().max():.3f}) vs observed {lp.observed.mean():.3f} on "
            f"average, p <= {lp.p.max():.3g} in every case; {int(lp.holds.sum())} of {len(lp)} meet the "
            f"criterion" + (" — the shuffled score is not zero but clearly negative (cross-validated "
                            "r is biased below zero under the null: held-out folds' means deviate opposite to the "
                            "training means the intercept uses), and far below the observed score"
                            if lp["null mean"].mean() < -0.05 else ""))
    if not len(cka):
        return text + ". Linear CKA: no peak-null rows"
    return text + (f". Linear CKA's null mean is {cka['null mean'].mean():.3f} vs observed "
                   f"{cka.observed.mean():.3f} (biased CKA is positive under the null at this n and width)")


# ------------------------------------------------------------------------------------------- (3), (4), (5)


def perturbation_rows(kinds: tuple[str, ...], test: Callable[[pd.DataFrame], pd.Series]):
    """Rows builder: the peak-pair differences of the perturbations named ``kinds`` (prefixes of the
    ``perturbation`` column), each with ``holds = test(rows)``."""
    def build(table: pd.DataFrame, results) -> pd.DataFrame:
        peak = table[table.quantity == "peak_difference"].copy()
        if not len(peak):
            raise NotComputed("the perturbation table has no peak_difference rows (the peak-pair statistics did "
                              "not run)")
        peak["perturbation"] = peak["perturbation"].fillna("")
        peak["relative"] = peak.score / peak.score_b.abs()
        parts = []
        for kind in kinds:
            part = peak[peak.perturbation.str.startswith(kind)]
            rows = pd.DataFrame({"model pair": pair(part), "metric": base(part.metric), "direction": part.direction,
                                 "condition": part.perturbation, "original": part.score_b,
                                 "perturbed": part.score_a, "difference": part.score, "relative": part.relative,
                                 "CI low": part.ci_low, "CI high": part.ci_high, "p": part.p_value, "n": part.n})
            rows["holds"] = test(rows)
            parts.append(rows)
        return pd.concat(parts, ignore_index=True)
    return build


def lowers(rows: pd.DataFrame) -> pd.Series:
    return (rows.difference < 0) & (rows.p < 0.05)


def of(rows: pd.DataFrame, kind: str) -> pd.DataFrame:
    return rows[rows.condition.str.startswith(kind)]


def grayscale_summary(lp: pd.DataFrame, rows: pd.DataFrame) -> str:
    return (f"linear predictivity: median relative change {pct(lp.relative)} (range {pct(lp.relative, 'min')} to "
            f"{pct(lp.relative, 'max')}); {int(lp.holds.sum())} of {len(lp)} within ±10%; "
            f"{int(((lp.p < 0.05) & (lp.difference < 0)).sum())} significant decreases")


def objects_summary(lp: pd.DataFrame, rows: pd.DataFrame) -> str:
    thing = of(rows[rows.metric == LP], "thing_only")
    contrast = (f"median {pct(thing.relative)}, {int(thing.holds.sum())} of {len(thing)} significantly lower"
                if len(thing) else "not run")
    return (f"objects removed (stuff_only): median relative change {pct(lp.relative)}, "
            f"{int(lp.holds.sum())} of {len(lp)} linear-predictivity cases significantly lower "
            f"(n = {int(lp.n.iloc[0]) if len(lp) else 0} masked images). For contrast, objects only "
            f"(thing_only): {contrast}")


def captions_summary(lp: pd.DataFrame, rows: pd.DataFrame) -> str:
    lp_all = rows[rows.metric == LP]
    text = "; ".join(
        (f"{k}: median relative change {pct(v.relative)}, {int(v.holds.sum())} of {len(v)} significantly lower"
         if len(v) else f"{k}: not run (no rows)")
        for k, v in ((k, of(lp_all, k)) for k in ("scramble", "nouns_only", "nouns_verbs")))
    verdicts = part_verdicts(lp_all, ("scramble", "nouns_only"))
    return f"linear predictivity — {text} (verdict: scramble {verdicts[0]}, nouns_only {verdicts[1]})"


# ------------------------------------------------------------------------------------------------ (6), (7)


def aggregation_rows(table: pd.DataFrame, results) -> pd.DataFrame:
    peak = table[table.quantity == "peak_difference"]
    if not len(peak):
        raise NotComputed("the aggregation table has no peak_difference rows")
    k_max = int(peak.k.max())
    last = peak[peak.k == k_max]
    rows = []
    for (mx, my, metric, d), g in last.groupby(["model_x", "model_y", "metric", "direction"], sort=False):
        matched, shuffled = g[g.control == "matched"], g[g.control == "shuffled"]
        if not len(matched) or not len(shuffled):
            continue
        m, s = matched.iloc[0], shuffled.iloc[0]
        matched_up = m.score > 0 and m.p_value < 0.05
        shuffled_flat = not (s.score > 0 and s.p_value < 0.05) and s.score_a <= 0.05
        rows.append({"model pair": f"{mx} x {my}", "metric": base(metric), "direction": d,
                     "matched k=1": m.score_b, f"matched k={k_max}": m.score_a, "matched gain": m.score,
                     "matched p": m.p_value, "matched CI low": m.get("ci_low", np.nan),
                     "matched CI high": m.get("ci_high", np.nan), "shuffled k=1": s.score_b, f"shuffled k={k_max}": s.score_a,
                     "shuffled gain": s.score, "shuffled p": s.p_value,
                     "holds": bool(matched_up and shuffled_flat)})
    if not rows:
        raise NotComputed(f"the aggregation table has no model pair with both a matched and a shuffled "
                          f"peak_difference row at k = {k_max}")
    return pd.DataFrame(rows)


def aggregation_summary(lp: pd.DataFrame, rows: pd.DataFrame) -> str:
    k_max = next(int(c.split("=")[1]) for c in rows.columns if c.startswith("matched k=") and c != "matched k=1")
    return (f"linear predictivity, k = {k_max} vs 1 caption at the peak pair: matched gain "
            f"{lp['matched gain'].median():+.3f} (median; p < 0.05 in {int((lp['matched p'] < 0.05).sum())} of "
            f"{len(lp)}), shuffled gain {lp['shuffled gain'].median():+.3f} with scores "
            f"{lp[f'shuffled k={k_max}'].median():+.3f}; {int(lp.holds.sum())} of {len(lp)} meet the criterion")


def preference_rows(table: pd.DataFrame, contrast: str) -> pd.DataFrame:
    """Forced-choice accuracy and mean paired difference of one preference ``contrast``, per model pair and
    direction, with ``holds`` = accuracy > 0.5 with binomial p < 0.05."""
    part = table[table.contrast == contrast] if "contrast" in table else table.iloc[:0]
    acc = part[part.quantity == "accuracy"].set_index(["model_x", "model_y", "direction"])
    diff = part[part.quantity == "mean_difference"].set_index(["model_x", "model_y", "direction"])
    rows = pd.DataFrame({"model pair": [f"{a} x {b}" for a, b, _ in acc.index],
                         "direction": [d for *_, d in acc.index],
                         "layers (x, y)": [f"{int(r.layer_x)}, {int(r.layer_y)}" for r in acc.itertuples()],
                         "accuracy": acc.score.values, "accuracy p": acc.p_value.values,
                         "accuracy CI low": acc.ci_low.values if "ci_low" in acc else np.nan,
                         "accuracy CI high": acc.ci_high.values if "ci_high" in acc else np.nan,
                         "mean difference": diff.score.reindex(acc.index).values,
                         "difference p": diff.p_value.reindex(acc.index).values, "n": acc.n.values})
    rows["holds"] = (rows.accuracy > 0.5) & (rows["accuracy p"] < 0.05)
    return rows


def preference_summary(lp: pd.DataFrame, rows: pd.DataFrame) -> str:
    return (f"forced-choice accuracy {lp.accuracy.min():.3f}–{lp.accuracy.max():.3f} (median "
            f"{lp.accuracy.median():.3f}, chance 0.5), binomial p <= {lp['accuracy p'].max():.2g}; "
            f"{int(lp.holds.sum())} of {len(lp)} cases significant")


# ------------------------------------------------------------------------------------------------------ (8)


def depth_rows(table: pd.DataFrame, context: dict) -> pd.DataFrame:
    from depth_asymmetry import asymmetry_rows
    from depth_asymmetry import layerwise_bootstrap

    boot, why = layerwise_bootstrap(context["results"], table, n_boot=context.get("n_boot", 200),
                                    seed=context.get("seed", 0))
    if boot is None:
        raise NotComputed(why)
    rows = asymmetry_rows(boot, context.get("ci", 0.95))
    rows.attrs["missing"] = why  # model pairs without stores or rows, said in the statistic
    return rows


def depth_summary(lp: pd.DataFrame, rows: pd.DataFrame) -> str:
    counts = {k: int((lp["language peak"] == k).sum()) for k in ("deeper", "shallower", "the same")}
    lead = max(counts, key=counts.get)
    return (f"{lp.metric.iloc[0]}, {int(lp.resamples.iloc[0])} bootstrap resamples of the stimuli: language models "
            f"peak deeper than vision models in {counts['deeper']} of {len(lp)} cases, shallower in "
            f"{counts['shallower']}, at the same relative depth (interval of language − vision covers 0) in "
            f"{counts['the same']}; median peak depth vision {lp['vision depth'].median():.2f}, language "
            f"{lp['language depth'].median():.2f}, difference {lp['language − vision'].median():+.2f} — language "
            f"models mostly peak {'at the same relative depth' if lead == 'the same' else lead}" +
            (f" ({rows.attrs['missing']})" if rows.attrs.get("missing") else ""))


# ------------------------------------------------------------------------------------------------ the table

LAYERWISE, PERTURBATION = "layerwise/results.parquet", "perturbation/results.parquet"
#: Every finding the report decides, in order.
FINDINGS = (
    Finding(1, "Alignment rises from early layers and peaks in the middle-to-late layers", LAYERWISE,
            "the whole layer grid", LP,
            "at the peak layer pair both relative depths are >= 0.4, and the best score over the other model's "
            "layers at the peak layer exceeds that at the first scored layer on both sides by >= 10% of the peak "
            "(for a lower-is-better metric \"best\" and \"peak\" are minima and the score must fall by that much)",
            rise_rows, rise_summary, missing="the layerwise table has no linear-predictivity scores"),
    Finding(2, "Shuffled pairing is near zero", "layerwise/peak_null.parquet", "peak_null (shuffled pairing)", LP,
            "at the peak pair, |mean of the shuffled-pairing null| <= 0.05 and p <= 0.05", null_rows, null_summary,
            missing="the peak-null table has no linear-predictivity rows"),
    Finding(3, "Grayscale barely changes alignment", PERTURBATION, "peak_difference, grayscale", LP,
            "|(grayscale - original) / original| <= 10% at the peak pair",
            perturbation_rows(("grayscale",), lambda r: r.relative.abs() <= 0.10), grayscale_summary,
            parts=("grayscale",), missing="the grayscale condition did not run (no grayscale rows)"),
    Finding(4, "Removing the objects lowers alignment", PERTURBATION, "peak_difference, stuff_only (thing_only "
            "for contrast)", LP, "stuff_only minus original < 0 with p < 0.05",
            perturbation_rows(("stuff_only", "thing_only"), lowers), objects_summary, parts=("stuff_only",),
            missing="no stuff_only rows: the mask conditions did not run (they need images with instance masks; "
                    "the data have none usable, or perturbation.toml lists no mask condition)"),
    Finding(5, "Scrambling and nouns-only lower alignment", PERTURBATION,
            "peak_difference, scramble, nouns_only (nouns_verbs shown)", LP,
            "scramble and nouns_only each minus original < 0 with p < 0.05 (both must hold)",
            perturbation_rows(("scramble", "nouns_only", "nouns_verbs"), lowers), captions_summary,
            parts=("scramble", "nouns_only"), missing="the caption conditions did not run (no scramble or "
                                                      "nouns_only rows)"),
    Finding(6, "Averaging more captions per image raises alignment, and not for shuffled groups",
            "aggregation_captions/results.parquet", "peak_difference at the largest k, matched and shuffled", LP,
            "matched k = K minus k = 1 > 0 with p < 0.05, and the shuffled-group difference is not significantly "
            "> 0 and its score stays <= 0.05", aggregation_rows, aggregation_summary,
            missing="the aggregation table has no linear-predictivity rows"),
    Finding(7, "Matched beats mismatched", "preference_coco/results.parquet", "accuracy, mean_difference "
            "(contrast matched)", "", "forced-choice accuracy > 0.5 with p < 0.05",
            lambda table, context: preference_rows(table, "matched"), preference_summary,
            missing="the preference table has no matched-contrast accuracy rows"),
    Finding(8, "Vision and language models peak at different relative depths (depth asymmetry)", LAYERWISE,
            "peak layer pair of the whole grid, on the layerwise stores resampled over stimuli", "linear_cka",
            "the percentile interval (95%) of language peak depth minus vision peak depth excludes 0 (above: "
            "language peaks deeper; below: shallower)", depth_rows, depth_summary,
            missing="the depth bootstrap has no linear-CKA rows"),
)
