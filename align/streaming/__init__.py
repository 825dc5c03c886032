"""n larger than memory: layer grids scored from row chunks of the activation stores (the primal, feature-space
forms of linear CKA and linear predictivity), and the choice between that and the in-memory engine.

Public surface (one name per line).
"""

from align.streaming._choose import MEMORY_ENV
from align.streaming._choose import MEMORY_FRACTION
from align.streaming._choose import available_memory
from align.streaming._choose import choose_path
from align.streaming._choose import explain_path
from align.streaming._choose import in_memory_bytes
from align.streaming._grid import STREAMABLE
from align.streaming._rows import default_chunk_rows
from align.streaming._grid import stream_pairwise
