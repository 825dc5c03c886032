"""Experiments: each a config -> long-form results table."""

from align.experiments._layerwise import RunOutputs
from align.experiments._layerwise import run
from align.experiments._layerwise import run_extract
from align.experiments._layerwise import run_score
from align.experiments._layerwise import score_pair
from align.experiments._pairing import paired_layers
