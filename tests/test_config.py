"""Config validation: every bad key or value is an error that names it; the fingerprint ignores formatting."""

import pytest

from align.config import ConfigError, load_config, parse_config

BASE = {"name": "t", "output": "results/t", "models": [{"name": "a"}, {"name": "b"}]}


def test_repo_configs_are_valid():
    for path in ("configs/demo.toml", "configs/smoke.toml"):
        cfg = load_config(path)
        assert cfg.models and cfg.score.metrics


@pytest.mark.parametrize("patch, message", [
    ({"colour": 1}, "unknown top-level key(s) ['colour']"),
    ({"stimuli": {"kind": "imagenet"}}, "stimuli.kind = 'imagenet'"),
    ({"stimuli": {"n": 2}}, "stimuli.n = 2"),
    ({"stimuli": {"sizes": 3}}, "stimuli: unknown key(s) ['sizes']"),
    ({"stimuli": {"kind": "folder"}}, "needs stimuli.images and stimuli.captions"),
    ({"models": []}, "at least one [[models]]"),
    ({"models": [{"name": "a", "pooling": ["max"]}]}, "pooling 'max' unknown"),
    ({"models": [{"name": "a", "layers": 3}]}, "models[0]: unknown key(s) ['layers']"),
    ({"models": [{"name": "a"}, {"name": "a"}]}, "duplicate model names"),
    ({"extract": {"dtype": "int8"}}, "extract.dtype = 'int8'"),
    ({"extract": {"batch_size": 0}}, "extract.batch_size = 0"),
    ({"extract": {"device": "tpu9"}}, "extract.device = 'tpu9'"),
    ({"score": {"caption": "best"}}, "score.caption = 'best'"),
    ({"score": {"metrics": []}}, "score.metrics"),
])
def test_bad_values_are_named(patch, message):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **patch})
    assert message in str(err.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="missing required key 'output'"):
        parse_config({"name": "t", "models": [{"name": "a"}]})


def test_fingerprint_ignores_formatting_and_output(tmp_path):
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text('name="x"\noutput="o1"\n[[models]]\nname="m"\n')
    b.write_text('# comment\nname = "x"\noutput = "o2"\n\n[[models]]\nname = "m"\n')
    assert load_config(a).fingerprint() == load_config(b).fingerprint()
    assert load_config(a).fingerprint() != load_config(a, {"stimuli.n": 40}).fingerprint()


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
