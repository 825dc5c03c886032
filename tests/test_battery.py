"""The public battery (``align.check_metric``) over every registered metric and the example probes, and proof that
it fails metrics whose declarations are false.

The checks themselves live in ``align/engine/_battery.py`` so that users run the same battery on their own probes
(``align check-probe probes/my_probe.py``).
"""

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import align
from align.engine import MetricCheckError

BUILT_IN = frozenset(align.list_metrics())
for _probe in sorted((Path(__file__).resolve().parent.parent / "probes").glob("*.py")):
    align.load_probe(_probe)

METRICS = align.list_metrics()
ALWAYS_RUN = {"identity", "jit_equals_eager", "no_recompilation", "padding", "degenerate_input"}


@pytest.mark.parametrize("name", METRICS)
def test_metric_passes_the_battery(name):
    metric = align.get_metric(name)
    report = align.check_metric(name)
    # Every built-in passes everything; the example probes (plain float32 formulas, see probes/) everything but the
    # scale sweep, which they pass once they bring each layer to unit magnitude before squaring.
    tolerated = set() if name in BUILT_IN else {"scale_extremes"}
    assert {c.name for c in report.failures} <= tolerated, f"\n{report}"
    ran = {c.name for c in report.checks if c.status == "pass"} | tolerated
    declared = {f"invariance:{i}" for i in metric.invariances}
    if "isotropic_scale" in metric.invariances:
        declared.add("scale_extremes")
    if metric.symmetric:
        declared.add("symmetry")
    if metric.bounds is not None:
        declared.add("bounds")
    if metric.not_invariant_to is not None:
        declared.add(f"non_invariance:{metric.not_invariant_to}")
    assert ALWAYS_RUN | declared <= ran, f"declared but not checked: {sorted((ALWAYS_RUN | declared) - ran)}"


def _correlation_rdm(A):
    """Condensed correlation-distance RDM of ``[n, d]`` rows (each stimulus centered across its features)."""
    A = A - jnp.mean(A, axis=1, keepdims=True)
    A = A / jnp.linalg.norm(A, axis=1, keepdims=True)
    i, j = np.triu_indices(A.shape[0], 1)
    return (1.0 - A @ A.T)[i, j]


def correlation_rsa(X, Y):
    """Pearson correlation of two correlation-distance RDMs: the probe of issue 9 (not invariant to zero columns)."""
    a, b = _correlation_rdm(X), _correlation_rdm(Y)
    a, b = a - jnp.mean(a), b - jnp.mean(b)
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))


def _probe(**fields):
    declared = dict(name="correlation_rsa", compare=correlation_rsa, symmetric=True, bounds=(-1.0, 1.0),
                    invariances=frozenset({"isotropic_scale", "stimulus_order"}), not_invariant_to="anisotropic_scale")
    return align.Metric(**{**declared, **fields})


def test_probe_falsely_declaring_pad_invariance_fails_only_the_padding_check():
    report = align.check_metric(_probe(pad_invariant=True))
    assert [c.name for c in report.failures] == ["padding"], f"\n{report}"
    gaps = report["padding"].values
    assert gaps["batched_vs_unpadded"] > 1e-4 and gaps["zero_columns"] > 1e-4  # the engine padded it: wrong numbers
    with pytest.raises(MetricCheckError, match="padding.*declare pad_invariant=False"):
        report.raise_if_failed()


def test_probe_without_declaration_is_not_padded_and_passes():
    report = align.check_metric(_probe())  # pad_invariant defaults to False
    assert report.passed, f"\n{report}"
    assert report["padding"].values["padded_by_engine"] == 0.0
    assert report["padding"].values["zero_columns"] > 1e-4  # padding it would have been wrong
    assert report.raise_if_failed() is report
    assert len(str(report).splitlines()) == len(report.checks)


def first_column_r(X, Y):
    """Pearson r between the first feature of X and of Y: unchanged by rescaling each feature."""
    a, b = X[:, 0] - jnp.mean(X[:, 0]), Y[:, 0] - jnp.mean(Y[:, 0])
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))


@pytest.mark.parametrize("name, false_fields, failing", [
    # prepared RDMs never get padded by the engine, yet the false declaration is caught (zero columns appended)
    ("rsa", {"pad_invariant": True}, {"padding"}),
    ("rsa", {"invariances": frozenset({"rotation", "isotropic_scale", "stimulus_order"})}, {"invariance:rotation"}),
    ("cknna", {"symmetric": True}, {"symmetry"}),
    ("procrustes", {"bounds": (0.0, 0.5)}, {"bounds", "identity"}),
    ("linear_cka", {"not_invariant_to": "isotropic_scale"}, {"non_invariance:isotropic_scale"}),  # not testable
    ("first_column_r", {"not_invariant_to": "anisotropic_scale"}, {"non_invariance:anisotropic_scale"}),
])
def test_false_declarations_are_caught(name, false_fields, failing):
    if name == "first_column_r":
        wrong = align.Metric(name=name, compare=first_column_r, bounds=(-1.0, 1.0), **false_fields)
    else:
        wrong = dataclasses.replace(align.get_metric(name), **false_fields)
    report = align.check_metric(wrong)
    assert {c.name for c in report.failures} == failing, f"\n{report}"


def test_probe_that_cannot_be_traced_fails_with_the_error():
    def host_only(X, Y):
        return float(np.corrcoef(np.asarray(X)[:, 0], np.asarray(Y)[:, 0])[0, 1])  # needs concrete arrays

    report = align.check_metric(align.Metric(name="host_only", compare=host_only, bounds=(-1.0, 1.0)))
    assert not report.passed
    assert "identity" in {c.name for c in report.failures}
    assert "TracerArrayConversionError" in report["identity"].detail


def test_check_metric_takes_spec_strings_and_rejects_unknown_arguments():
    report = align.check_metric("mutual_knn(k=5)")
    assert report.kwargs == {"k": 5} and report.passed
    with pytest.raises(ValueError, match="unknown argument"):
        align.check_metric("linear_cka", metric_kwargs={"sigma_frac": 0.5})


def centroid_distance_r(X, Y):
    """Pearson r of the distances to the centroid, in plain float32: squares of 1e-12-scaled layers flush to zero."""
    a = jnp.linalg.norm(X - jnp.mean(X, axis=0), axis=1)
    b = jnp.linalg.norm(Y - jnp.mean(Y, axis=0), axis=1)
    a, b = a - jnp.mean(a), b - jnp.mean(b)
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))


def centroid_distance_r_scaled(X, Y):
    """The same in a scaled form: each side at unit magnitude before anything is squared."""
    return centroid_distance_r(X / jnp.max(jnp.abs(X)), Y / jnp.max(jnp.abs(Y)))


def test_scale_extremes_fails_a_probe_that_squares_raw_activations_and_passes_the_scaled_form():
    declared = dict(symmetric=True, bounds=(-1.0, 1.0), invariances=frozenset({"isotropic_scale", "translation"}))
    raw = align.check_metric(align.Metric(name="centroid_distance_r", compare=centroid_distance_r, **declared))
    assert {c.name for c in raw.failures} == {"scale_extremes"}, f"\n{raw}"  # invariance:isotropic_scale (x3.7) passes
    assert "1e-12:both" in raw["scale_extremes"].detail
    assert raw["scale_extremes"].values["max_rel_diff"] == np.inf
    scaled = align.check_metric(align.Metric(name="centroid_distance_r_scaled", compare=centroid_distance_r_scaled,
                                             **declared))
    assert scaled.passed, f"\n{scaled}"
    assert scaled["scale_extremes"].values["max_rel_diff"] <= 1e-4


def test_scale_extremes_is_skipped_without_an_isotropic_scale_declaration():
    undeclared = dataclasses.replace(align.get_metric("linear_cka"), invariances=frozenset({"rotation"}))
    report = align.check_metric(undeclared)
    assert report["scale_extremes"].status == "skip" and report.passed, f"\n{report}"
