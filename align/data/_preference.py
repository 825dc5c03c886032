"""Human-preference pairs in the Pick-a-Pic layout: one caption, two images, which one people preferred.

Pick-a-Pic (Kirstain et al., "Pick-a-Pic: An Open Dataset of User Preferences for Text-to-Image Generation",
NeurIPS 2023) ships Parquet shards with, per row, ``caption``, ``jpg_0`` and ``jpg_1`` (encoded image bytes) and
``label_0``, ``label_1`` (1/0 for a preference, 0.5/0.5 for a tie). ``load_pick_a_pic`` reads the captions and
labels only; image bytes are read on first use and decoded per image.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import uuid
from pathlib import Path

from align.data._cache import cache_root
from align.data._cache import file_key
from align.data._report import ExclusionReport
from align.data._report import make_report
from align.data._stimuli import Stimulus
from align.data._stimuli import StimulusError
from align.data._stimuli import StimulusSet
from align.data._stimuli import first_n
from align.data._stimuli import stimulus_set_name

PICK_A_PIC_COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """One preference judgement.

    Attributes:
      pair_id: ``f"pair{row:06d}"``, row = the row in the Parquet file.
      caption: the prompt both images were generated for.
      preferred: 0 when image A (``jpg_0``) was preferred, 1 for image B (``jpg_1``).
      labels: ``(label_0, label_1)`` as in the file.
      row: row index in the Parquet file.
    """

    pair_id: str
    caption: str
    preferred: int
    labels: tuple[float, float]
    row: int


class PreferenceSet:
    """Preference pairs backed by one Parquet file; images are decoded lazily.

    Attributes:
      name: set name (default: the file stem).
      path: the Parquet file.
      pairs: usable pairs, in file order.
      report: rows left out (``tie``, ``missing_label``, ``empty_caption``), with pair ids.
    """

    def __init__(self, name: str, path: Path, pairs: list[PreferencePair], report: ExclusionReport):
        self.name, self.path, self.pairs, self.report = name, Path(path), pairs, report
        self._images = None  # pyarrow Table of jpg_0, jpg_1, read on first use

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> PreferencePair:
        return self.pairs[i]

    def __repr__(self) -> str:
        return f"PreferenceSet(name={self.name!r}, pairs={len(self)}, excluded={self.report.n_excluded})"

    def image_bytes(self, i: int, which: int) -> bytes:
        """Encoded bytes of image ``which`` (0 = A, 1 = B) of pair ``i``."""
        if which not in (0, 1):
            raise ValueError(f"which must be 0 or 1, got {which!r}")
        if self._images is None:
            import pyarrow.parquet as pq

            self._images = pq.read_table(self.path, columns=["jpg_0", "jpg_1"])
        pair = self.pairs[i]
        value = self._images.column(f"jpg_{which}")[pair.row].as_py()
        if value is None:
            raise StimulusError(f"{self.path}: row {pair.row} ({pair.pair_id}) has no jpg_{which} image")
        return value

    def load_image(self, i: int, which: int):
        """Image ``which`` (0 = A, 1 = B) of pair ``i`` as an RGB ``PIL.Image``; StimulusError naming the row if
        it cannot be decoded."""
        from PIL import Image, UnidentifiedImageError

        data = self.image_bytes(i, which)
        pair = self.pairs[i]
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise StimulusError(f"{self.path}: row {pair.row} ({pair.pair_id}), jpg_{which} cannot be decoded: "
                                f"{e}") from None

    def to_stimulus_set(self, cache_dir: str | Path | None = None) -> StimulusSet:
        """Both images of every pair as a StimulusSet (image files written once to a cache folder).

        Image ids are ``f"{pair_id}_0"`` and ``f"{pair_id}_1"``, each with the pair's caption, ``group`` =
        ``pair_id`` and ``extra`` = ``{"pair_id", "side", "preferred" (bool), "label"}``. Files keep their encoded
        bytes (no re-encoding) and go to ``cache_dir`` (default ``$ALIGN_CACHE/preference/<name>-<file hash>``),
        written into a temporary folder renamed into place; an existing folder is reused. Every image is decoded
        once while writing: an undecodable one raises StimulusError naming its row.
        """
        if cache_dir is None:
            cache_dir = cache_root() / "preference" / f"{self.name}-{file_key(self.path)}"
        folder = Path(cache_dir)
        manifest = folder / "manifest.json"
        if not manifest.exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                tmp.mkdir()
                files = {}
                for i, pair in enumerate(self.pairs):
                    for which in (0, 1):
                        data = self.image_bytes(i, which)
                        ext = self._check_and_extension(data, pair, which)
                        name = f"{pair.pair_id}_{which}{ext}"
                        (tmp / name).write_bytes(data)
                        files[f"{pair.pair_id}_{which}"] = name
                (tmp / "manifest.json").write_text(json.dumps({"source": str(self.path), "files": files}))
                try:
                    os.rename(tmp, folder)
                except OSError:
                    if not manifest.exists():
                        raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        files = json.loads(manifest.read_text())["files"]
        stimuli = []
        for pair in self.pairs:
            for which in (0, 1):
                image_id = f"{pair.pair_id}_{which}"
                if image_id not in files:
                    raise StimulusError(f"{folder} has no image {image_id}; delete the folder to rewrite it")
                stimuli.append(Stimulus(image_id=image_id, image=folder / files[image_id], captions=(pair.caption,),
                                        group=pair.pair_id,
                                        extra={"pair_id": pair.pair_id, "side": which,
                                               "preferred": pair.preferred == which, "label": pair.labels[which]}))
        return StimulusSet(name=self.name, stimuli=stimuli, source=str(self.path),
                           description=f"preference pairs from {self.path.name} (both images of each pair)",
                           reports=() if self.report.is_empty else (self.report,))

    def _check_and_extension(self, data: bytes, pair: PreferencePair, which: int) -> str:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = (im.format or "").lower()
                im.load()
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise StimulusError(f"{self.path}: row {pair.row} ({pair.pair_id}), jpg_{which} cannot be decoded: "
                                f"{e}") from None
        return {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "gif": ".gif", "bmp": ".bmp"}.get(fmt, ".img")


def _label(value) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def load_pick_a_pic(path: str | Path, name: str | None = None, *, n: int | str | None = None) -> PreferenceSet:
    """Preference pairs from a Pick-a-Pic style Parquet file.

    Args:
      path: Parquet file with columns ``caption``, ``jpg_0``, ``jpg_1`` (image bytes), ``label_0``, ``label_1``.
      name: set name, used as given; default the file stem, with ``-first<n>`` appended when only the first n
        rows are read (``align.data.stimulus_set_name``).
      n: read only the first ``n`` rows (pairs); None or "all": every row. More rows than the file holds is a
        StimulusError naming both numbers and the file.

    Returns:
      A PreferenceSet of the rows with a strict preference. Ties (equal labels), missing labels (null or NaN)
      and empty captions are left out and counted in ``PreferenceSet.report`` (also logged).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise StimulusError(f"preference file {path} does not exist")
    columns = set(pq.read_schema(path).names)
    missing = [c for c in PICK_A_PIC_COLUMNS if c not in columns]
    if missing:
        raise StimulusError(f"{path} lacks the Pick-a-Pic column(s) {missing}; found {sorted(columns)}")
    table = pq.read_table(path, columns=["caption", "label_0", "label_1"])
    total = table.num_rows
    used = first_n(n, total, str(path), unit="rows (pairs)")
    table = table.slice(0, used)
    captions, l0, l1 = (table.column(c).to_pylist() for c in ("caption", "label_0", "label_1"))
    width = max(6, len(str(len(captions) - 1)))
    pairs, excluded = [], {"tie": [], "missing_label": [], "empty_caption": []}
    for row, (caption, a, b) in enumerate(zip(captions, l0, l1)):
        pair_id = f"pair{row:0{width}d}"
        a, b = _label(a), _label(b)
        if a is None or b is None:
            excluded["missing_label"].append(pair_id)
        elif a == b:
            excluded["tie"].append(pair_id)
        elif not isinstance(caption, str) or not caption.strip():
            excluded["empty_caption"].append(pair_id)
        else:
            pairs.append(PreferencePair(pair_id=pair_id, caption=caption.strip(), preferred=0 if a > b else 1,
                                        labels=(a, b), row=row))
    report = make_report(f"load_pick_a_pic({path.name})", len(captions), len(pairs), excluded=excluded, unit="pairs")
    return PreferenceSet(name=name or stimulus_set_name(path.stem, used, total), path=path, pairs=pairs,
                         report=report)
