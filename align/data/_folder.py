"""Loaders for image–caption data on disk: a folder plus a captions file, COCO (official or compact), Flickr.

Every loader returns a ``StimulusSet``. Problems are never skipped silently: by default a missing image file or
an empty caption raises a ``StimulusError`` naming the items; with ``on_error="exclude"`` those items are left
out and an ``ExclusionReport`` (counts and ids per reason) is attached to ``StimulusSet.reports`` and logged.

Image files are found by id: ``<images_dir>/<image_id>.<ext>`` for the usual extensions (``.jpg``, ``.jpeg``,
``.png``, ``.webp``, ``.bmp``, ``.gif``, ``.tif``, ``.tiff``, any case), or the exact file name when the
captions file names files (``image`` column, Flickr token file).

Caption scores: when the captions file carries a per-caption score (a JSONL field present on any line, a CSV
column in the header, a field of COCO's caption annotations; named by ``caption_score``, default ``"score"``, e.g.
``"clip_score"``), every caption must have a finite number there, and the set carries them
(``Stimulus.caption_scores``, ``StimulusSet.caption_score``). A missing, non-numeric or NaN score raises a
``StimulusError`` (a ``ValueError``) naming the file, line and caption id, whatever ``on_error`` says: a half-scored
file is a broken file, not a few bad items. Scores of captions removed as empty are dropped with them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from align.data._cache import cache_root
from align.data._cache import file_key
from align.data._report import make_report
from align.data._stimuli import Stimulus
from align.data._stimuli import StimulusError
from align.data._stimuli import StimulusSet
from align.data._stimuli import first_n
from align.data._stimuli import stimulus_set_name

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
ON_ERROR = ("raise", "exclude")
DEFAULT_CAPTION_SCORE = "score"
_ABSENT = object()  # a caption row without the score field


def _image_index(images_dir: Path) -> dict[str, Path]:
    """file stem and file name -> path, for every image file in ``images_dir`` (first extension in
    ``IMAGE_EXTENSIONS`` order wins when several files share a stem)."""
    if not images_dir.is_dir():
        what = "is a file, not a folder" if images_dir.is_file() else "does not exist"
        raise StimulusError(f"images folder {images_dir} {what} (absolute path tried: {images_dir.absolute()})")
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    best: dict[str, tuple[int, Path]] = {}
    index: dict[str, Path] = {}
    with os.scandir(images_dir) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            r = rank.get(ext.lower())
            if r is None:
                continue
            path = Path(entry.path)
            index[entry.name] = path
            if stem not in best or r < best[stem][0]:
                best[stem] = (r, path)
    index.update({stem: path for stem, (_, path) in best.items() if stem not in index})
    return index


class _Rows:
    """Captions gathered per image, in order of first appearance.

    ``score_field``: the name of the per-caption score to read (None: scores are not read); ``declared`` becomes
    True when the file carries that field (a CSV header column, or any JSONL line / COCO annotation having it).
    """

    def __init__(self, score_field: str | None = None):
        self.captions: dict[str, list[tuple[str, str, object]]] = {}  # image_id -> [(caption, where, raw score)]
        self.lookup: dict[str, str] = {}  # image_id -> name to look its file up by
        self.group: dict[str, str | None] = {}
        self.score_field = score_field
        self.declared = False

    def score_of(self, row: Mapping):
        """The raw score of a row (a JSON object, a CSV row, an annotation), or ``_ABSENT``."""
        if self.score_field is None or self.score_field not in row:
            return _ABSENT
        self.declared = True
        return row[self.score_field]

    def add(self, image_id: str, caption, where: str, lookup: str | None = None, group=None, score=_ABSENT):
        image_id = str(image_id)
        self.captions.setdefault(image_id, []).append(("" if caption is None else str(caption), where, score))
        self.lookup.setdefault(image_id, lookup or image_id)
        if group not in (None, ""):
            self.group.setdefault(image_id, str(group))


def _score_value(raw) -> tuple[float | None, str]:
    """``(score, "")`` for a finite number (a JSON number or a numeric string), else ``(None, what is wrong)``."""
    if raw is _ABSENT or raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, "missing"
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None, f"{raw!r} is not a number"
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (ValueError, OverflowError):
        return None, f"{raw!r} is not a number"
    if math.isnan(value):
        return None, "NaN"
    if math.isinf(value):
        return None, f"{raw!r} is not finite"
    return value, ""


def _caption_scores(rows: _Rows, image_ids: list[str], source: str) -> dict[str, list[float]]:
    """image_id -> one score per caption row (file order); raises naming every caption without a usable score."""
    scores, bad = {}, []
    for image_id in image_ids:
        values = []
        for k, (_, where, raw) in enumerate(rows.captions[image_id]):
            value, problem = _score_value(raw)
            if problem:
                bad.append(f"{where} (caption {image_id}#{k}): {problem}")
            values.append(value)
        scores[image_id] = values
    if bad:
        raise StimulusError(
            f"{source}: the captions carry a {rows.score_field!r} score, so every caption needs a finite number "
            f"there, but {len(bad)} caption(s) do not: {'; '.join(bad[:5])}{'; ...' if len(bad) > 5 else ''}. Fix "
            f"the file, or load it with caption_score=None (config: point stimuli.caption_score at another field) "
            f"to ignore the scores.")
    return scores


@contextlib.contextmanager
def _utf8_text(path: Path, what: str = "captions file"):
    """Reading ``path`` as UTF-8 text: a byte sequence that is not UTF-8 is a StimulusError naming the file."""
    try:
        yield
    except UnicodeDecodeError as e:
        bad = e.object[e.start:e.start + 1].hex() if isinstance(e.object, (bytes, bytearray)) else "?"
        raise StimulusError(f"{what} {path} is not UTF-8 text (byte 0x{bad}: {e.reason}); re-save it as UTF-8 "
                            f"(e.g. `iconv -f latin1 -t utf-8`)") from None


def _read_jsonl(path: Path, rows: _Rows) -> None:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise StimulusError(f"{path}:{line_no} is not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise StimulusError(f"{path}:{line_no} is not a JSON object (one {{\"image_id\": ..., \"caption\": "
                                    f"...}} per line)")
            key = _IMAGE_KEYS[0] if _IMAGE_KEYS[0] in row else _IMAGE_KEYS[1] if _IMAGE_KEYS[1] in row else None
            if key is None or "caption" not in row:
                raise StimulusError(f"{path}:{line_no} needs 'caption' and 'image_id' (an image id) or 'image' (an "
                                    f"image file name); keys: {sorted(row)}")
            _add_row(rows, key, str(row[key]).strip(), row["caption"], f"{path.name}:{line_no}", row.get("group"),
                     rows.score_of(row))


#: Keys naming a caption's image, in JSONL lines and CSV headers alike: ``image_id`` (an id, the file found as
#: ``<id>.<ext>``) or ``image`` (a file name in the images folder, e.g. ``1000268201_693b08cb0e.jpg``).
_IMAGE_KEYS = ("image_id", "image")


def _add_row(rows: _Rows, key: str, value: str, caption, where: str, group, score) -> None:
    """One caption row; ``key`` says whether ``value`` is an image id or a file name (whose stem is the id)."""
    if key == "image":
        stem, ext = os.path.splitext(value)
        image_id = stem if ext.lower() in IMAGE_EXTENSIONS else value
        rows.add(image_id, caption, where, lookup=value, group=group, score=score)
    else:
        rows.add(value, caption, where, group=group, score=score)


def _read_csv(path: Path, rows: _Rows) -> None:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = fields
        key = next((k for k in _IMAGE_KEYS if k in fields), None)
        if key is None or "caption" not in fields:
            raise StimulusError(f"{path}: a CSV captions file needs a header with 'caption' and 'image_id' (an image "
                                f"id) or 'image' (an image file name): 'image_id,caption' or 'image,caption'; "
                                f"found {fields}")
        for line_no, row in enumerate(reader, start=2):
            score = rows.score_of(row)  # a short row has None in the missing columns: "missing"
            _add_row(rows, key, (row[key] or "").strip(), row["caption"] or "", f"{path.name}:{line_no}",
                     row.get("group"), score)


def _assemble(rows: _Rows, images_dir: Path, *, name: str | None, base: str, step: str, masks_dir: Path | None,
              n: int | str | None, on_error: str, source: str, description: str = "",
              groups: Mapping[str, str] | None = None, extras: Mapping[str, dict] | None = None,
              masks: Mapping[str, Path] | None = None) -> StimulusSet:
    """Rows -> StimulusSet: take the first ``n`` images, find files, check captions, apply ``on_error``.

    The set is called ``name`` when given, else ``stimulus_set_name(base, used, total)`` (``base`` when every image
    of the captions file is used, ``<base>-first<k>`` for the first k).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    image_ids = list(rows.captions)
    used = first_n(n, len(image_ids), source)
    name = name or stimulus_set_name(base, used, len(image_ids))
    image_ids = image_ids[:used]
    scores = _caption_scores(rows, image_ids, source) if rows.declared else None
    index = _image_index(images_dir)
    mask_index = _image_index(masks_dir) if masks_dir is not None and masks_dir.is_dir() else {}
    missing, no_caption, empty_ids, empty_where = [], [], [], []
    stimuli = []
    for image_id in image_ids:
        path = index.get(rows.lookup[image_id]) or index.get(image_id)
        kept, kept_scores = [], []
        for k, (text, where, _) in enumerate(rows.captions[image_id]):
            if text.strip():
                kept.append(text.strip())
                kept_scores.append(scores[image_id][k] if scores is not None else None)
            else:
                empty_ids.append(f"{image_id}#{k}")
                empty_where.append(f"{image_id}#{k} ({where})")
        if path is None:
            missing.append(image_id)
            continue
        if not kept:
            no_caption.append(image_id)
            continue
        mask = (masks or {}).get(image_id) or mask_index.get(f"{image_id}.png")
        group = (groups or {}).get(image_id, rows.group.get(image_id))
        stimuli.append(Stimulus(image_id=image_id, image=path, captions=tuple(kept), mask=mask, group=group,
                                extra=dict((extras or {}).get(image_id, {})),
                                caption_scores=tuple(kept_scores) if scores is not None else None))
    if on_error == "raise" and (missing or empty_ids):
        problems = []
        if missing:
            problems.append(f"{len(missing)} image(s) have no file in {images_dir.absolute()} (tried the id with "
                            f"{', '.join(IMAGE_EXTENSIONS)}): {missing[:5]}")
        if empty_ids:
            problems.append(f"{len(empty_ids)} caption(s) are empty: {empty_where[:5]}")
        raise StimulusError(f"{step}: " + "; ".join(problems) +
                            ". Fix the data, or pass on_error='exclude' to leave these out (they are then counted "
                            "in StimulusSet.reports).")
    report = make_report(step, len(image_ids), len(stimuli),
                         excluded={"missing_image": missing, "no_caption": no_caption},
                         removed_captions={"empty_caption": empty_ids})
    return StimulusSet(name=name, stimuli=stimuli, description=description, source=source,
                       reports=() if report.is_empty else (report,),
                       caption_score=rows.score_field if scores is not None else None)


def load_image_captions(images_dir: str | Path, captions_file: str | Path, name: str | None = None, *,
                        masks_dir: str | Path | None = None, n: int | str | None = None, on_error: str = "raise",
                        caption_score: str | None = DEFAULT_CAPTION_SCORE, duplicates: str = "error") -> StimulusSet:
    """A folder of images plus a captions file.

    Args:
      images_dir: folder holding ``<image_id>.<ext>`` files.
      captions_file: JSONL with one ``{"image_id": ..., "caption": ...}`` object per line, or CSV with a header
        row; both take the same keys: ``caption`` and either ``image_id`` (an id; the file is
        ``<images_dir>/<image_id>.<ext>``) or ``image`` (a file name in ``images_dir``, e.g. Flickr8k Kaggle
        ``captions.txt``), plus optional ``group`` and the ``caption_score`` field. One row per caption; an image
        with several captions has several rows. The format is read from the first character: ``{`` means JSONL.
      name: stimulus set name, used as given; default: the name of the folder that holds ``captions_file``,
        with ``-first<n>`` appended when only the first n images are used (``align.data.stimulus_set_name``).
      masks_dir: optional folder of ``<image_id>.png`` label maps (0 background, k object k); images without one
        get ``mask=None``.
      n: keep only the first ``n`` images (in order of first appearance in the captions file); None or "all":
        every image. More than the file holds is a StimulusError naming both numbers and the file.
      on_error: "raise" (default) or "exclude" (see the module docstring).
      caption_score: the JSONL field / CSV column holding a per-caption score (e.g. "clip_score"), read when the
        file has it (see the module docstring); None: never read scores.
      duplicates: "error" (default): copies of one stimulus (images with the same file bytes or the same
        captions, ``StimulusSet.copies``) raise a DuplicateStimulusError naming them; "group": keep them
        (cross-validated scores of a run keep each group of copies in one fold, ``StimulusSet.fold_ids``).

    Returns:
      A StimulusSet in captions-file order; captions of one image in file order; ``caption_scores`` per image
      when the file carries the score.
    """
    images_dir, captions_file = Path(images_dir), Path(captions_file)
    if not captions_file.is_file():
        raise StimulusError(f"captions file {captions_file} does not exist (absolute path tried: "
                            f"{captions_file.absolute()}; relative paths in a config file resolve against the "
                            f"config file's folder)")
    rows = _Rows(caption_score)
    with _utf8_text(captions_file):
        with open(captions_file, encoding="utf-8") as f:
            head = f.read(4096).lstrip()
        if head.startswith("{"):
            _read_jsonl(captions_file, rows)
        else:
            _read_csv(captions_file, rows)
    return _assemble(rows, images_dir, name=name, base=captions_file.resolve().parent.name,
                     step=f"load_image_captions({captions_file.name})",
                     masks_dir=Path(masks_dir) if masks_dir is not None else None, n=n, on_error=on_error,
                     source=str(captions_file)).check_duplicates(duplicates)


def load_flickr(token_file: str | Path, images_dir: str | Path, name: str | None = None, *,
                n: int | str | None = None,
                on_error: str = "raise", duplicates: str = "error") -> StimulusSet:
    """Flickr8k / Flickr30k captions in the ``Flickr8k.token.txt`` format: ``<file>.jpg#<k><TAB><caption>``.

    Image ids are file stems (``1000268201_693b08cb0e``); captions of an image are ordered by ``k``.
    Groups are None (Flickr has no concept labels). Other arguments as ``load_image_captions``.
    """
    token_file, images_dir = Path(token_file), Path(images_dir)
    if not token_file.is_file():
        raise StimulusError(f"Flickr token file {token_file} does not exist")
    entries: list[tuple[str, str, int, str, str]] = []
    with _utf8_text(token_file, "Flickr token file"), open(token_file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            key, tab, caption = line.rstrip("\n").partition("\t")
            file_name, hash_, k = key.rpartition("#")
            if not tab or not hash_ or not k.strip().isdigit():
                raise StimulusError(f"{token_file}:{line_no} is not '<file>#<k><TAB><caption>': {line[:80]!r}")
            entries.append((file_name, caption, int(k), f"{token_file.name}:{line_no}", Path(file_name).stem))
    order = {}
    for file_name, *_ in entries:
        order.setdefault(file_name, len(order))
    rows = _Rows()
    for file_name, caption, k, where, stem in sorted(entries, key=lambda e: (order[e[0]], e[2])):
        rows.add(stem, caption, where, lookup=file_name)
    return _assemble(rows, images_dir, name=name, base=token_file.resolve().parent.name,
                     step=f"load_flickr({token_file.name})", masks_dir=None, n=n, on_error=on_error,
                     source=str(token_file)).check_duplicates(duplicates)


# ---------------------------------------------------------------------------------------------------------------
# COCO


def load_coco(path: str | Path, *, images_dir: str | Path | None = None, instances: str | Path | bool | None = None,
              cache_dir: str | Path | None = None, name: str | None = None, n: int | str | None = None,
              on_error: str = "raise", caption_score: str | None = DEFAULT_CAPTION_SCORE,
              duplicates: str = "error") -> StimulusSet:
    """MS-COCO captions, with instance masks and concept groups when instance annotations are available.

    Two layouts:

    - compact (``/work/shared/data/coco_captions_subset``): ``path`` is a folder with ``images/<id>.jpg``,
      ``captions.jsonl``, and optionally ``masks/<id>.png`` and ``instances.jsonl`` (``{"image_id", "k",
      "category", ...}``, k = 1 the largest instance).
    - official: ``path`` is a ``captions_<split>.json`` file. ``images_dir`` defaults to ``<root>/<split>`` or
      ``<root>/images/<split>`` where ``<root>`` is the folder above ``annotations/``. ``instances`` defaults to
      the sibling ``instances_<split>.json`` when it exists (``False`` skips masks). Masks are decoded with
      pycocotools into label maps at the annotation's width x height: instances sorted by area (largest first)
      are painted as k = 1, 2, ... (smaller objects overwrite larger ones; at most 255 instances, the rest are
      left out and counted in ``extra["instances_dropped"]``). Crowd regions are included. Label maps are
      written to ``cache_dir`` (default ``$ALIGN_CACHE/coco_masks/<hash of the instances file>``), each file
      atomically, and reused.

    Groups: the category of instance k = 1 (the largest) for images listed in the instance annotations (None
    for a listed image with no instance); None for images without instance annotations. ``extra["categories"]``
    lists the categories of instances 1, 2, ... .

    Args:
      n: keep only the first ``n`` images (captions order); masks are decoded for those only. None or "all":
        every image; more than there are: a StimulusError (as ``load_image_captions``).
      name: default ``path``'s folder name (compact) or ``coco-<split>`` (official), with ``-first<n>`` appended
        when only the first n images are used.
      on_error: as ``load_image_captions``.
      caption_score: the per-caption score field of ``captions.jsonl`` lines (compact) or of caption annotations
        (official), read when present; as ``load_image_captions``. Real COCO captions carry none.
      duplicates: "error" (default) or "group"; as ``load_image_captions``.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "captions.jsonl").is_file():
            raise StimulusError(f"{path} is a folder without captions.jsonl; pass the compact COCO folder or an "
                                f"official captions_<split>.json file")
        return _load_coco_compact(path, name=name, n=n, on_error=on_error, caption_score=caption_score,
                                  images_dir=Path(images_dir) if images_dir else path / "images"
                                  ).check_duplicates(duplicates)
    if not path.is_file():
        raise StimulusError(f"COCO captions {path} do not exist")
    return _load_coco_official(path, images_dir=images_dir, instances=instances, cache_dir=cache_dir, name=name,
                               n=n, on_error=on_error, caption_score=caption_score).check_duplicates(duplicates)


def _load_coco_compact(root: Path, *, name, n, on_error, caption_score, images_dir: Path) -> StimulusSet:
    rows = _Rows(caption_score)
    with _utf8_text(root / "captions.jsonl"):
        _read_jsonl(root / "captions.jsonl", rows)
    groups, extras = {}, {}
    if (root / "instances.jsonl").is_file():
        per_image: dict[str, dict[int, str]] = {}
        instances = root / "instances.jsonl"
        with _utf8_text(instances, "instances file"), open(instances, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    per_image.setdefault(str(row["image_id"]), {})[int(row["k"])] = row["category"]
        for image_id, cats in per_image.items():
            ordered = [cats[k] for k in sorted(cats)]
            extras[image_id] = {"categories": ordered}
            groups[image_id] = cats.get(1)
    masks_dir = root / "masks"
    return _assemble(rows, images_dir, name=name, base=root.resolve().name, step=f"load_coco({root.name})",
                     masks_dir=masks_dir if masks_dir.is_dir() else None, n=n, on_error=on_error, source=str(root),
                     description="MS-COCO captions (compact layout)", groups=groups, extras=extras)


def _coco_default_images_dir(captions_json: Path, split: str) -> Path:
    root = captions_json.resolve().parent.parent
    for candidate in (root / split, root / "images" / split, captions_json.parent / split):
        if candidate.is_dir():
            return candidate
    raise StimulusError(f"no images folder found for {captions_json} (tried {root / split} and "
                        f"{root / 'images' / split}); pass images_dir=")


def _load_coco_official(captions_json: Path, *, images_dir, instances, cache_dir, name, n, on_error,
                        caption_score) -> StimulusSet:
    split = captions_json.stem.split("captions_", 1)[-1]
    with _utf8_text(captions_json):
        data = json.loads(captions_json.read_text(encoding="utf-8"))
    files = {str(im["id"]): im["file_name"] for im in data.get("images", [])}
    rows = _Rows(caption_score)
    for ann in data.get("annotations", []):
        image_id = str(ann["image_id"])
        rows.add(image_id, ann.get("caption"), f"{captions_json.name}: annotation {ann.get('id')}",
                 lookup=files.get(image_id, image_id), score=rows.score_of(ann))
    images_dir = Path(images_dir) if images_dir is not None else _coco_default_images_dir(captions_json, split)
    if instances is None:
        candidate = captions_json.with_name(captions_json.name.replace("captions_", "instances_", 1))
        instances = candidate if candidate != captions_json and candidate.is_file() else False
    groups, extras, masks = {}, {}, {}
    if instances is not False:
        wanted = list(rows.captions)[:first_n(n, len(rows.captions), str(captions_json))]  # n checked before decoding
        groups, extras, masks = _coco_instance_masks(Path(instances), wanted, cache_dir)
    return _assemble(rows, images_dir, name=name, base=f"coco-{split}", step=f"load_coco({captions_json.name})",
                     masks_dir=None, n=n, on_error=on_error, source=str(captions_json),
                     description=f"MS-COCO {split} captions", groups=groups, extras=extras, masks=masks)


def _coco_instance_masks(instances_json: Path, image_ids: Iterable[str], cache_dir):
    """Label maps for ``image_ids`` from an official instances file -> (groups, extras, mask paths)."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    if not instances_json.is_file():
        raise StimulusError(f"COCO instances file {instances_json} does not exist")
    data = json.loads(instances_json.read_text())
    categories = {c["id"]: c["name"] for c in data.get("categories", [])}
    sizes = {str(im["id"]): (int(im["height"]), int(im["width"])) for im in data.get("images", [])}
    anns: dict[str, list[dict]] = {}
    for ann in data.get("annotations", []):
        anns.setdefault(str(ann["image_id"]), []).append(ann)
    out_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "coco_masks" / file_key(instances_json)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups, extras, masks = {}, {}, {}
    for image_id in image_ids:
        if image_id not in sizes:
            continue  # not covered by this instances file: no mask, no group
        h, w = sizes[image_id]
        items = sorted(anns.get(image_id, []), key=lambda a: (-float(a.get("area", 0.0)), a.get("id", 0)))
        kept, dropped = items[:255], len(items) - min(len(items), 255)
        extras[image_id] = {"categories": [categories.get(a["category_id"], str(a["category_id"])) for a in kept]}
        if dropped:
            extras[image_id]["instances_dropped"] = dropped
        groups[image_id] = extras[image_id]["categories"][0] if kept else None
        target = out_dir / f"{image_id}.png"
        if not target.exists():
            label = np.zeros((h, w), dtype=np.uint8)
            for k, ann in enumerate(kept, start=1):
                label[_decode_segmentation(mask_utils, ann["segmentation"], h, w) > 0] = k
            tmp = out_dir / f".{image_id}.{uuid.uuid4().hex[:8]}.png"
            Image.fromarray(label).save(tmp)
            os.replace(tmp, target)
        masks[image_id] = target
    return groups, extras, masks


def _decode_segmentation(mask_utils, segmentation, h: int, w: int) -> np.ndarray:
    """``[h, w]`` uint8 mask of a COCO segmentation (polygons, uncompressed or compressed RLE)."""
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, h, w)
    else:
        rle = segmentation
    return mask_utils.decode(rle)
