"""The robustness report (`make robustness`, paper_figures/robustness*.py): its configs, the skipped poolings, the
per-specification verdicts and the marginal table, the specification curve; on made-up tables (the real run is
`make robustness`)."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "paper_figures"))

robustness = importlib.import_module("robustness")
robustness_eval = importlib.import_module("robustness_eval")
robustness_report = importlib.import_module("robustness_report")


def test_every_derived_config_is_valid_and_skips_what_cannot_be_pooled():
    from align.config import parse_config

    spec = robustness.load_spec()
    skipped = {(s["model"], s["pooling"]): s["reason"] for s in robustness.skipped_poolings(spec)}
    assert "CNN" in skipped[("mobilenetv2-imagenet", "cls")]
    assert "encoder" in skipped[("minilm-l6", "last")]
    assert ("dinov2-small-imgfocus", "cls") not in skipped and ("smollm2-135m", "last") not in skipped
    runs = robustness.derived(spec)
    outputs = [parse_config(data, source=str(base)).output for _, data, base in runs]
    assert len(set(outputs)) == len(outputs)  # no two runs share a folder
    for _, data, base in runs:
        cfg = parse_config(data, source=str(base))
        pools = {m.name: set(m.pooling) for m in cfg.models}
        assert "cls" not in pools["mobilenetv2-imagenet"] and "last" not in pools["minilm-l6"]
        assert cfg.score.caption in spec["choices"]["caption"]
    kinds = [parse_config(d, source=str(b)).experiment.kind for _, d, b in runs]
    ch = spec["choices"]
    assert kinds.count("layerwise") == len(ch["caption"])  # one per caption, every preprocessing option in it
    assert kinds.count("preference") == len(ch["caption"]) * len(ch["preprocess"]) * len(ch["metrics"])
    assert kinds.count("aggregation") == len(ch["preprocess"])  # caption "first" only


def test_spec_errors_name_the_key(tmp_path):
    bad = tmp_path / "r.toml"
    text = (ROOT / "paper_figures" / "robustness.toml").read_text()
    bad.write_text(text.replace("[choices]", "[choices]\nbogus = 1"))
    with pytest.raises(ValueError, match="bogus"):
        robustness.load_spec(bad)
    bad.write_text(text.replace('caption = ["first", "mean"]', "caption = []"))
    with pytest.raises(ValueError, match="caption"):
        robustness.load_spec(bad)


def _cases(rng):
    rows = []
    spec = robustness.load_spec()
    ch = spec["choices"]
    for vp in ch["vision_pooling"]:
        for lp in ch["language_pooling"]:
            for metric in ch["metrics"]:
                for case in range(4):
                    # finding "3" holds in every case when the metric is CKA, in one of four otherwise
                    holds = robustness.metric_tag(metric) == "linear_cka" or case == 0
                    rows.append({"finding": "3", "vision_pooling": vp, "language_pooling": lp, "preprocess": "none",
                                 "metric": robustness.metric_tag(metric), "caption": "first",
                                 "model pair": f"v x l{case}", "direction": "x_to_y",
                                 "effect": rng.normal(), "ci_low": np.nan, "ci_high": np.nan, "holds": holds,
                                 "note": ""})
    return pd.DataFrame(rows), spec


def test_verdicts_and_marginal_counts():
    cases, spec = _cases(np.random.default_rng(0))
    specs = robustness_eval.spec_table(cases)
    assert len(specs) == 2 * 2 * 4
    cka = specs[specs.metric == "linear_cka"]
    assert (cka.verdict == "holds").all() and (specs[specs.metric != "linear_cka"].verdict == "does not hold").all()
    assert np.allclose(specs.effect.values, cases.groupby(["finding", *robustness.AXES], sort=False)
                       .effect.median().values)
    table = robustness_report.marginal_table(specs, spec).set_index("finding")
    assert table.loc["3", "all"] == "4/16"
    assert table.loc["3", "CKA"] == "4/4" and table.loc["3", "LP"] == "0/4"
    assert table.loc["3", "vision cls"] == "2/8"
    assert table.loc["1", "all"] == "–"  # no rows of finding 1


def test_spec_curve_is_drawn(tmp_path):
    import fig_robustness

    cases, spec = _cases(np.random.default_rng(1))
    specs = robustness_eval.spec_table(cases)
    path = fig_robustness.draw(specs, cases, "3", "3", spec, tmp_path / "curve.png")
    assert path.exists() and path.stat().st_size > 5000
