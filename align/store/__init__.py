"""Activation store: one Parquet file per (stimulus set, condition, model, pooling), with provenance inside.

Rows are stimuli (column ``stimulus_id``, optional ``group_id``); each layer is one fixed-size-list column. Write with
``StoreWriter`` (resumable parts, atomic files), read with ``open_store`` (a read-only mapping layer -> ``[n, d]``
float32 array), and pair the rows of two stores with ``align_rows`` (an image store and its caption store by image id
with ``align_by_id=True``). ``store_path`` is where a store lives: its file name carries the ordered stimulus-id hash.
"""

from align.store._errors import NonFiniteActivationError
from align.store._errors import StoreFormatError
from align.store._errors import StoreMismatchError
from align.store._paths import store_path
from align.store._reader import ActivationStore
from align.store._reader import align_rows
from align.store._reader import match_rows
from align.store._reader import open_store
from align.store._writer import StoreWriter
from align.store._load import load_activations
from align.store._format import atomic_path
from align.store._writer import remove_store_leftovers
from align.store._export import EXPORT_FORMATS
from align.store._export import export_store
