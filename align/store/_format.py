"""The on-disk layout shared by the writer and the reader.

A store is one Parquet file: column ``stimulus_id`` (string), optional ``group_id`` (string), then one
``fixed_size_list<float32 | float16>[d_l]`` column per layer, named by the layer name. Provenance is JSON in the
schema metadata under the key ``b"align"``. Part files of an unfinished store have the same layout.

Every page carries a CRC-32 checksum (``write_options``) that every read verifies (``READ_OPTIONS``), so a damaged
file raises ``StoreFormatError`` naming it instead of loading wrong values. Apart from the ``created`` time (which
``SOURCE_DATE_EPOCH`` pins, see ``created_time``), a store written twice from the same inputs is the same bytes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from align.store._errors import StoreFormatError

META_KEY = b"align"
ID_COLUMN = "stimulus_id"
GROUP_COLUMN = "group_id"
RESERVED_COLUMNS = (ID_COLUMN, GROUP_COLUMN)
STORE_DTYPES = {"float32": (np.float32, pa.float32()), "float16": (np.float16, pa.float16())}
ROW_GROUP_BYTES = 64 * 2**20  # activation bytes per row group of a finished store


def layer_type(width: int, dtype: str) -> pa.DataType:
    """``fixed_size_list<dtype>[width]`` with non-null elements."""
    return pa.list_(pa.field("element", STORE_DTYPES[dtype][1], nullable=False), width)


def store_schema(layer_names: Sequence[str], widths: Sequence[int], dtype: str, has_groups: bool,
                 meta: dict) -> pa.Schema:
    """Schema of a store or part file, with ``meta`` as JSON under ``b"align"``."""
    fields = [pa.field(ID_COLUMN, pa.string(), nullable=False)]
    if has_groups:
        fields.append(pa.field(GROUP_COLUMN, pa.string(), nullable=False))
    fields += [pa.field(name, layer_type(d, dtype), nullable=False) for name, d in zip(layer_names, widths)]
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta, sort_keys=True).encode()})


def read_meta(path: Path, schema: pa.Schema | None = None) -> dict:
    """The ``align`` metadata of a Parquet file; StoreFormatError naming the file when absent or unreadable."""
    if schema is None:
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as e:
            raise StoreFormatError(f"{path} is not a readable Parquet file ({e}); delete it and re-extract") from None
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise StoreFormatError(f"{path} is a Parquet file without align metadata (schema key 'align'); "
                               "it was not written by align.store.StoreWriter")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise StoreFormatError(f"{path}: the align metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise StoreFormatError(f"{path}: the align metadata is not a JSON object")
    return meta


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it, rename it to ``path`` and fsync the folder.

    The temporary name is ``<name>.<pid>.tmp`` in the same folder (same file system, so the rename is atomic). On an
    exception it is removed; after a kill it is left behind and removed by the next writer.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_options(layer_names: Sequence[str]) -> dict:
    """ParquetWriter options: activations uncompressed and without dictionaries (floats do not compress), and a
    CRC-32 checksum in every page header (verified on read, see ``READ_OPTIONS``)."""
    return {"compression": {ID_COLUMN: "zstd", GROUP_COLUMN: "zstd", **{n: "none" for n in layer_names}},
            "use_dictionary": [ID_COLUMN, GROUP_COLUMN], "write_page_checksum": True}


#: ``pq.read_table`` / ``pq.ParquetFile`` options for every read of a store or part file: pages whose CRC-32
#: checksum does not match (flipped bits on disk or in transfer) raise instead of loading wrong values. Pages
#: written without a checksum (stores from before align wrote them) are read unchecked.
READ_OPTIONS = {"page_checksum_verification": True}


def created_time() -> str:
    """The ``created`` time recorded in a store (UTC, ISO 8601, seconds).

    Now, unless the environment variable ``SOURCE_DATE_EPOCH`` (the reproducible-builds convention: seconds since
    1970-01-01 UTC) pins it: a store written twice from the same inputs is then identical byte for byte.

    Raises:
      ValueError: ``SOURCE_DATE_EPOCH`` is set but is not an integer.
    """
    pinned = os.environ.get("SOURCE_DATE_EPOCH")
    if pinned is None or pinned == "":
        when = datetime.datetime.now(datetime.timezone.utc)
    else:
        try:
            when = datetime.datetime.fromtimestamp(int(pinned), datetime.timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise ValueError(f"SOURCE_DATE_EPOCH = {pinned!r}: must be an integer number of seconds since "
                             "1970-01-01 UTC (it pins the created time of stores); unset it to use the current "
                             "time") from None
    return when.isoformat(timespec="seconds")
