"""Test-wide numerics policy: strict dtype promotion, warnings as errors (pyproject), offline hubs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; tests that need it are skipped when it is absent."""
    path = os.path.abspath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.skip("../shared/data is not present")
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A folder with two tiny random models (``vision``: DINOv2 architecture, ``language``: BERT), per module."""
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import _extract_tiny as tiny

    root = tmp_path_factory.mktemp("tiny")
    tiny.vision_model(root / "vision", "dinov2")
    tiny.language_model(root / "language", "bert")
    return root


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster for the module (2 CPUs, no dashboard); keep its tests in one xdist group."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="error", log_to_driver=False)
    yield
    ray.shutdown()
