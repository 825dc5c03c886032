"""Custom probes: loading by path, the two worked examples against NumPy oracles, and use through the engine."""

from pathlib import Path

import numpy as np
import pytest

import align

PROBES = Path(__file__).resolve().parent.parent / "probes"


@pytest.fixture(scope="module")
def probes():
    return align.load_probe(PROBES / "cosine_centroid.py"), align.load_probe(str(PROBES / "gram_correlation.py"))


def _data(seed=0, n=30):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 7))
    return X.astype(np.float32), (X @ rng.normal(size=(7, 11)) + rng.normal(size=(n, 11))).astype(np.float32)


def test_load_probe_registers_once_and_is_idempotent(probes):
    assert {"cosine_centroid", "gram_correlation"} <= set(align.list_metrics())
    assert align.load_probe(PROBES / "cosine_centroid.py") is probes[0]  # no second registration
    with pytest.raises(FileNotFoundError, match="does not exist"):
        align.load_probe("probes/no_such_probe.py")
    assert align.load_probe("align.metrics._rsa").__name__ == "align.metrics._rsa"  # module names work too


def test_cosine_centroid_matches_numpy(probes):
    X, Y = _data()
    a = np.linalg.norm(X - X.mean(0), axis=1)
    b = np.linalg.norm(Y - Y.mean(0), axis=1)
    expected = np.corrcoef(a, b)[0, 1]
    assert float(probes[0].cosine_centroid(X, Y)) == pytest.approx(expected, abs=1e-5)
    grid = align.pairwise("cosine_centroid", [X, Y], [Y])
    np.testing.assert_allclose(grid.score()[:, 0], [expected, 1.0], atol=1e-5)


def test_gram_correlation_matches_numpy(probes):
    X, Y = _data(1)
    iu = np.triu_indices(len(X), 1)
    gx = ((X - X.mean(0)) @ (X - X.mean(0)).T)[iu]
    gy = ((Y - Y.mean(0)) @ (Y - Y.mean(0)).T)[iu]
    expected = np.corrcoef(gx, gy)[0, 1]
    grid = align.pairwise("gram_correlation", {"x": X}, {"y": Y, "x": X})
    np.testing.assert_allclose(grid.score()[0], [expected, 1.0], atol=1e-5)


WRONG_PROBE = '''
import jax.numpy as jnp
import numpy as np

import align


@align.register_metric(name="{name}", symmetric=True, bounds=(-1.0, 1.0), pad_invariant=True,
                       invariances=frozenset({{"isotropic_scale", "stimulus_order"}}))
def {name}(X, Y):
    """Pearson r of correlation-distance RDMs; declares pad_invariant=True, which is false."""
    def rdm(A):
        A = A - jnp.mean(A, axis=1, keepdims=True)
        A = A / jnp.linalg.norm(A, axis=1, keepdims=True)
        i, j = np.triu_indices(A.shape[0], 1)
        return (1.0 - A @ A.T)[i, j]
    a, b = rdm(X), rdm(Y)
    a, b = a - jnp.mean(a), b - jnp.mean(b)
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
'''


def test_check_probe_command_passes_the_example_probe(capsys, probes):
    from align.cli import main

    assert main(["check-probe", str(PROBES / "cosine_centroid.py")]) == 0  # already loaded: found by module
    out = capsys.readouterr().out.splitlines()
    checks = [line for line in out if line.startswith("cosine_centroid ")]
    names = {line.split()[2] for line in checks}
    assert {"identity", "padding", "scale_extremes"} <= names, names  # one line per check, each passed
    assert len(checks) == len(names) and all(" PASS " in line or " skip " in line for line in checks)
    assert any("padding" in line and "declares pad_invariant=True" in line for line in checks)
    assert out[-1].startswith(f"1 metric(s), {len(checks)} checks: {len(checks)} passed, 0 failed")


def test_check_probe_command_fails_a_false_pad_declaration(tmp_path, capsys):
    from align.cli import main

    path = tmp_path / "wrong_probe.py"
    path.write_text(WRONG_PROBE.format(name="cli_wrong_pad_probe"))
    assert main(["check-probe", str(path)]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if " FAIL " in line]
    assert len(failed) == 1 and "padding" in failed[0] and "declare pad_invariant=False" in failed[0]
    assert "1 failed" in out.splitlines()[-1] and "cli_wrong_pad_probe:padding" in out.splitlines()[-1]


def test_check_probe_command_user_errors_exit_2(tmp_path, capsys):
    from align.cli import main

    assert main(["check-probe", str(tmp_path / "missing.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "no_metric.py"
    empty.write_text("x = 1\n")
    assert main(["check-probe", str(empty)]) == 2
    assert "registers no metric" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("import align\nraise RuntimeError('boom')\n")
    assert main(["check-probe", str(broken)]) == 2
    assert "boom" in capsys.readouterr().err
