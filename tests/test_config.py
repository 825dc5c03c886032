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
    ({"models": [{"name": "a", "depth": 3}]}, "models[0]: unknown key(s) ['depth']"),
    ({"models": [{"name": "a", "layers": 3}]}, "models[0].layers = 3; must be a string or a list of strings"),
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


def test_a_string_where_a_list_is_expected_is_a_one_item_list():
    cfg = parse_config({**BASE, "models": [{"name": "a", "pooling": "cls"}, {"name": "b", "pooling": ["mean"]}],
                        "score": {"metrics": "linear_cka", "probes": "probes/p.py"},
                        "experiment": {"kind": "preference", "contrasts": "matched"}})
    assert cfg.models[0].pooling == ("cls",) and cfg.score.metrics == ("linear_cka",)
    assert cfg.score.probes == ("probes/p.py",) and cfg.experiment.contrasts == ("matched",)
    as_list = parse_config({**BASE, "score": {"metrics": ["linear_cka"]}})
    assert as_list.fingerprint() == parse_config({**BASE, "score": {"metrics": "linear_cka"}}).fingerprint()


@pytest.mark.parametrize("patch, message", [
    ({"plot": {"enabled": "no"}}, "plot.enabled = 'no'; must be a boolean"),
    ({"plot": {"enabled": 1}}, "plot.enabled = 1"),
    ({"score": {"null": -5}}, "score.null = -5"),
    ({"score": {"null": 2.5}}, "score.null = 2.5"),
    ({"score": {"caption": True}}, "score.caption = True"),
    ({"extract": {"batch_size": True}}, "extract.batch_size = True"),
    ({"extract": {"device": 0}}, "extract.device = 0"),
    ({"extract": {"device": "cuda:x"}}, "extract.device = 'cuda:x'"),
    ({"stimuli": {"seed": -1}}, "stimuli.seed = -1"),
    ({"stimuli": {"images": ""}}, "stimuli.images = ''"),
    ({"experiment": {"k_max": 2.0, "kind": "aggregation"}}, "experiment.k_max = 2.0"),
    ({"name": ""}, "name = ''"),
    ({"name": 5}, "name = 5"),
    ({"output": ""}, "output = ''"),
    ({"models": [{"name": "a", "pooling": ["cls", 3]}]}, "models[0].pooling = ['cls', 3]"),
    ({"models": [{"name": ["a"]}]}, "models[0].name = ('a',); must be a non-empty string"),
    ({"score": {"metrics": [""]}}, "an empty metric name"),
])
def test_types_are_checked(patch, message):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **patch})
    assert message in str(err.value)


@pytest.mark.parametrize("overrides, message, says_what_set_can_address", [
    ({"name.x": 1}, "'name' is the value 't', not a table", True),
    ({"models.name": "x"}, "'models' is an array, not a table", True),
    ({"stimuli..n": 3}, "empty key part", True),
    ({"score.null": -1}, "score.null = -1", False),
])
def test_overrides_that_cannot_apply_are_config_errors(tmp_path, overrides, message, says_what_set_can_address):
    path = tmp_path / "c.toml"
    path.write_text('name = "t"\noutput = "o"\n[[models]]\nname = "a"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    assert message in str(err.value) and ("--set can address" in str(err.value)) == says_what_set_can_address
    assert load_config(path, {"stimuli.n": 40, "plot.enabled": False}).plot.enabled is False
