"""Extraction: layer activations of frozen vision and language models, pooled and stored.

torch and transformers are imported only when a model is loaded, never at ``import align.extract``.
"""

from align.extract._encoder import check_device
from align.extract._encoder import check_device_map
from align.extract._extract import extract
from align.extract._extract import BatchSource
from align.extract._extract import LoadedModel
from align.extract._extract import LocalSource
from align.extract._extract import extract_stores
from align.extract._extract import stimulus_rows
from align.extract._show import LayerInfo
from align.extract._layers import select_layers
from align.extract._layers import layer_patterns
from align.extract._layers import selection_tag
from align.extract._show import show_model
from align.extract._extract import load_encoder
from align.extract._encoder import check_dtype
from align.extract._pooling import check_poolings
from align.extract._sources import list_models
from align.extract._sources import resolve_model
from align.extract._spec import ModelSpec
from align.extract._spec import ModelUnavailableError
from align.extract._spec import UnknownModelError
from align.extract._sources import check_available
from align.extract._pooling import LANGUAGE_POOLINGS
from align.extract._pooling import VISION_POOLINGS
