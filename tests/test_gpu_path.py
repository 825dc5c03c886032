"""The GPU path, checked on a CPU-only build: big-model extraction options reach transformers' ``from_pretrained``
(dtype applied, ``low_cpu_mem_usage`` passed, ``device_map`` refused without a GPU before any model loads), the
``[extract]`` keys, and ``benchmarks/gpu_check.py`` (no GPU: says so and exits 0; ``--allow-cpu --quick``: a tiny
accuracy table on the CPU)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

sys.path.insert(0, os.path.dirname(__file__))

import _extract_tiny as tiny  # noqa: E402

from align.config import ConfigError  # noqa: E402
from align.config import parse_config  # noqa: E402
from align.extract import load_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a red cat sits on the mat", "the blue car"]
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only build's behaviour")


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny.language_model(tmp_path_factory.mktemp("gpu") / "bert", "bert")


@pytest.fixture
def loads(monkeypatch):
    """Every ``from_pretrained`` call of a model: its keyword arguments and the loaded model."""
    calls = []
    original = transformers.PreTrainedModel.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        model = original(cls, *args, **kwargs)
        calls.append((kwargs, model))
        return model

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(spy))
    return calls


def test_dtype_and_low_cpu_mem_usage_reach_from_pretrained(bert, loads):
    plain = load_encoder(bert, device="cpu").encode(TEXTS, ["mean"])["mean"]
    low = load_encoder(bert, device="cpu", load_options={"low_cpu_mem_usage": True}).encode(TEXTS, ["mean"])["mean"]
    half = load_encoder(bert, dtype="bfloat16", device="cpu").encode(TEXTS, ["mean"])["mean"]
    (kw0, m0), (kw1, _), (kw2, m2) = loads
    assert "low_cpu_mem_usage" not in kw0 and kw1["low_cpu_mem_usage"] is True
    assert next(m0.parameters()).dtype == torch.float32
    assert kw2["dtype"] == torch.bfloat16 and next(m2.parameters()).dtype == torch.bfloat16  # applied, not just asked
    for a, b, c in zip(plain, low, half):
        np.testing.assert_array_equal(a, b)  # the option changes how weights load, not the numbers
        assert c.dtype == np.float32 and not np.array_equal(a, c)
        np.testing.assert_allclose(c, a, atol=0.15 * np.abs(a).max() + 0.05)


@pytest.mark.parametrize("options, device, message", [
    ({"device_map": "auto"}, "auto", "sees no CUDA device"),
    ({"device_map": "auto"}, "cpu", "device must be 'auto' or 'cuda'"),
    ({"device_map": "balanced"}, "auto", "device_map must be None or 'auto'"),
    ({}, "cuda", "sees no CUDA"),
])
def test_gpu_options_without_a_gpu_fail_before_loading(bert, loads, options, device, message):
    with pytest.raises(ValueError, match=message):
        load_encoder(bert, device=device, load_options=options)
    assert loads == []  # nothing was loaded


def _config(**extract):
    return parse_config({"name": "t", "output": "out", "stimuli": {"kind": "synthetic", "n": 8},
                         "models": [{"name": "a", "modality": "vision"}, {"name": "b", "modality": "language"}],
                         "extract": extract})


def test_extract_config_keys():
    assert _config().extract.load_options == {}
    cfg = _config(device_map="auto", low_cpu_mem_usage=True, dtype="bfloat16")
    assert cfg.extract.load_options == {"device_map": "auto", "low_cpu_mem_usage": True}
    for bad, message in (({"device_map": "sequential"}, "extract.device_map"),
                         ({"device_map": "auto", "device": "cpu"}, "extract.device must be"),
                         ({"low_cpu_mem_usage": "yes"}, "extract.low_cpu_mem_usage")):
        with pytest.raises(ConfigError, match=message):
            _config(**bad)


def _gpu_check(*args):
    env = {**os.environ, "ALIGN_THREADS": "1", "ALIGN_PROGRESS": "0"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_gpu_check_without_a_gpu_says_so_and_exits_0():
    proc = _gpu_check()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no GPU visible to JAX" in proc.stdout and "|" not in proc.stdout  # no table


@pytest.mark.slow
def test_gpu_check_quick_on_the_cpu_prints_an_accuracy_table():
    proc = _gpu_check("--allow-cpu", "--quick", "--skip-timing", "--metrics", "linear_cka,rsa,linear_predictivity")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 4 and rows[0].startswith("| metric")  # header + one row per metric
    for line, key in zip(rows[1:], ("linear_cka", "rsa", "linear_predictivity")):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == key and cells[4] == "yes" and float(cells[2]) <= float(cells[3])
