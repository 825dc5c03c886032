"""Run configs: TOML files validated into dataclasses, with a fingerprint that keys every output.

A config is data. Unknown keys and bad values are errors that name them (``ConfigError``): booleans are booleans,
counts are non-negative integers (never a bool or a float), names and paths are non-empty strings. A key that takes a
list of strings (``LIST_KEYS``) also takes one string, read as a one-item list (``pooling = "cls"`` is ``["cls"]``).
Checks that need files, models or the metric registry run in ``align.experiments.preflight``. The fingerprint is a
hash of the validated config's content (not of the file's text), so reformatting a file does not invalidate results.
See README "Config reference" for every key.
"""

from align.config._types import ConfigError
from align.config._types import RunConfig
from align.config._types import StimuliConfig
from align.config._types import ModelConfig
from align.config._types import ExtractConfig
from align.config._types import ScoreConfig
from align.config._types import PlotConfig
from align.config._types import ExecutionConfig
from align.config._types import LayerwiseExperiment
from align.config._types import PairedStatisticsExperiment
from align.config._types import PerturbationExperiment
from align.config._types import AggregationExperiment
from align.config._types import PreferenceExperiment
from align.config._types import ExperimentConfig
from align.config._types import EXPERIMENTS
from align.config._types import EXPERIMENT_KINDS
from align.config._types import VISION_POOLINGS
from align.config._types import LANGUAGE_POOLINGS
from align.config._types import STIMULUS_KINDS
from align.config._types import DTYPES
from align.config._types import SYNTHETIC_DEFAULT_N
from align.config._types import AGGREGATE_SIDES
from align.config._types import PREFERENCE_CONTRASTS
from align.config._types import SCORED_STIMULUS_KINDS
from align.config._types import EXECUTION_BACKENDS
from align.config._types import PLOT_FORMATS
from align.config._types import LIST_KEYS
from align.config._parse import parse_config
from align.config._parse import load_config
from align.config._parse import OVERRIDE_HELP
