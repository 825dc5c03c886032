"""Statistics shared by the metrics, the engine and the experiments, each written once: cross-validation folds,
Pearson r per column, ridge regression with exact leave-one-out penalties, and p-values and percentile intervals."""

from align.stats._correlation import column_pearson
from align.stats._correlation import correlation
from align.stats._correlation import mean_valid
from align.stats._correlation import pearson_from_sums
from align.stats._folds import fold_layout
from align.stats._folds import fold_masks
from align.stats._folds import fold_rows
from align.stats._folds import fold_structure
from align.stats._folds import kfold_ids
from align.stats._folds import resampled_fold_ids
from align.stats._folds import stacked_fold_rows
from align.stats._ridge import RidgeBasis
from align.stats._ridge import RidgeFit
from align.stats._ridge import center_stats
from align.stats._ridge import loo_error_sums
from align.stats._ridge import ridge_basis
from align.stats._ridge import ridge_fit
from align.stats._ridge import ridge_predict
from align.stats._ridge import ridge_project
from align.stats._ridge import ridge_solve
from align.stats._inference import bh_adjust
from align.stats._inference import maxstat_p
from align.stats._inference import percentile_interval
from align.stats._inference import permutation_p
from align.stats._heldout import heldout_difference
from align.stats._heldout import heldout_interval
from align.stats._paired import paired_summary
