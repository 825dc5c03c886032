"""Long-form results tables (Parquet) and the queries figures use."""

from align.results._table import RESULT_COLUMNS
from align.results._table import best_layer_pairs
from align.results._table import read_results
from align.results._table import score_matrix
from align.results._table import write_results
