"""Experiments: each a config -> long-form results table."""

from align.experiments._layerwise import RunOutputs
from align.experiments._layerwise import run
from align.experiments._layerwise import run_extract
from align.experiments._layerwise import run_score
from align.experiments._layerwise import score_pair
from align.experiments._pairing import paired_layers
from align.experiments._preflight import PreflightReport
from align.experiments._preflight import preflight
from align.experiments._layerwise import label_grid
from align.experiments._experiment import layerwise_peak_null
from align.experiments._experiment import run_experiment
from align.experiments._perturbation import run_perturbation
from align.experiments._perturbation import masked_stimuli
from align.experiments._perturbation import peak_statistic
from align.experiments._heldout import heldout_paired_difference
from align.experiments._aggregation import run_aggregation
from align.experiments._aggregation import derangement
from align.experiments._aggregation import mean_of_first
from align.experiments._preference import run_preference
from align.experiments._preference import contrast_scores
from align.experiments._preference import contrast_summary
from align.experiments._preference import ridge_fit
from align.experiments._preference import ScoredPairs
from align.experiments._preference import direction_scores
from align.experiments._preference import scored_caption_pairs
