"""Synthetic scenes: the embedded default stimulus set, rendered by align itself (no download, deterministic).

A scene description is a flat dict::

    {"scene_id": "scene00012", "shape": "star", "color": "red", "size": "small", "count": 2,
     "positions": ["left", "top"], "background": "blue", "texture": "stripes"}

One scene = ``count`` identical objects (same shape, colour and size), each in its own position slot, on a
textured background. Objects never overlap (slot combinations that could overlap at the drawn size and the
maximal jitter are never sampled). From each description come

- 4 paraphrased captions (different templates, word orders and synonyms),
- a *wrong caption*: the first template with exactly one attribute changed (``color``, ``shape`` or ``count``;
  a changed count adds or drops a position slot), in ``Stimulus.extra["wrong_caption"]``,
- ``renderings`` images (position/size jitter and background texture drawn per rendering) with a foreground
  label map (0 = background, k = object k, in the order of ``positions``).

Images are drawn at 2x and box-downsampled (anti-aliasing); a mask pixel is object k when at least half of its
2x2 sub-pixels are covered by object k. Randomness comes from ``numpy.random.default_rng([seed, scene, ...])``
streams, so scene i is the same whatever ``n`` is: ``synthetic-n100-s0`` is a prefix of ``synthetic-n500-s0``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from align._locks import output_lock
from align._locks import remove_leftovers
from align.data._stimuli import Stimulus
from align.data._stimuli import StimulusError
from align.data._stimuli import StimulusSet

GENERATOR_VERSION = 1
SUPERSAMPLE = 2
N_CAPTIONS = 4

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "heart")
COLORS = {
    "red": (220, 30, 35), "green": (35, 160, 60), "blue": (35, 85, 220), "yellow": (245, 210, 35),
    "orange": (245, 130, 25), "purple": (135, 55, 175), "white": (245, 245, 245), "black": (20, 20, 20),
}
BACKGROUNDS = {
    "gray": (128, 128, 128), "white": (235, 235, 235), "black": (30, 30, 30), "blue": (70, 110, 200),
    "green": (80, 150, 90), "yellow": (225, 200, 90), "pink": (235, 160, 190), "brown": (130, 90, 55),
}
TEXTURES = ("plain", "gradient", "stripes", "noise")
# Bounding radius of an object, as a fraction of the image side.
SIZES = {"small": 0.08, "medium": 0.12, "large": 0.17}
# Slot centres (x, y) as fractions of the image side; y grows downwards.
POSITIONS = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75),
             "center": (0.5, 0.5)}
POSITION_JITTER = 0.025  # max |offset| per axis, fraction of the image side
SIZE_JITTER = 0.04       # max relative change of the radius
_MIN_CONTRAST = 110.0    # min RGB distance between an object colour and its background colour

_SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("medium-sized", "mid-sized", "medium"),
               "large": ("large", "big", "huge")}
_TEXTURE_WORDS = {"plain": ("plain", "solid", "uniform"), "gradient": ("gradient", "shaded", "graded"),
                  "stripes": ("striped", "stripy", "banded"), "noise": ("noisy", "speckled", "grainy")}
_POSITION_WORDS = {"left": ("on the left", "on the left side"), "right": ("on the right", "on the right side"),
                   "top": ("at the top", "near the top"), "bottom": ("at the bottom", "near the bottom"),
                   "center": ("in the middle", "in the center")}
_BG_NOUNS = ("background", "backdrop")
_VERBS = (("sits", "sit"), ("is", "are"), ("appears", "appear"))
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}


def synthetic_set_name(n: int, seed: int, image_size: int = 224, renderings: int = 1) -> str:
    """The set name that encodes the parameters, e.g. ``"synthetic-n500-s0"`` (``-px<size>``, ``-r<k>`` added
    when they differ from the defaults)."""
    name = f"synthetic-n{n}-s{seed}"
    if image_size != 224:
        name += f"-px{image_size}"
    if renderings != 1:
        name += f"-r{renderings}"
    return name


def synthetic_scenes(root: str | Path, n: int = 500, seed: int = 0, image_size: int = 224,
                     renderings: int = 1) -> StimulusSet:
    """Render (or reuse) ``n`` synthetic scenes under ``root/<set name>/``.

    Args:
      root: folder that holds generated sets; the set goes to ``root/synthetic-n<n>-s<seed>[...]``.
      n: number of scene descriptions.
      seed: seed of every random choice (descriptions, captions, jitter, textures).
      image_size: side of the square RGB images, in pixels.
      renderings: images per scene description (different jitter and texture); with ``renderings > 1`` the
        image ids are ``f"{scene_id}-r{j}"`` and ``group`` is the scene id, otherwise ids are scene ids and
        ``group`` is None.

    Returns:
      A StimulusSet of ``n * renderings`` images, each with 4 captions, a mask and ``extra`` holding
      ``description`` (the dict above), ``wrong_caption``, ``wrong_attribute``, ``wrong_description``,
      ``scene_id`` and ``rendering``.

    Files: ``images/<id>.png``, ``masks/<id>.png``, ``captions.jsonl`` (``{"image_id", "caption_id", "caption"}``,
    the layout ``load_image_captions`` reads), ``scenes.jsonl`` (one line per image) and ``params.json``. They are
    written to a temporary folder ``root/.<name>.tmp-<pid>-<random>/`` that is renamed into place, under the lock
    ``root/<name>.lock`` (a second process waits, then reuses the set); a folder with the same ``params.json`` is
    reused. Temporary folders of killed renderings (no process holds their lock) are removed.
    """
    for label, value, low in (("n", n, 1), ("image_size", image_size, 32), ("renderings", renderings, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"synthetic_scenes: {label} must be an integer >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"synthetic_scenes: seed must be a non-negative integer, got {seed!r}")
    root = Path(root)
    name = synthetic_set_name(n, seed, image_size, renderings)
    params = {"generator": "align.data.synthetic_scenes", "version": GENERATOR_VERSION, "n": int(n),
              "seed": int(seed), "image_size": int(image_size), "renderings": int(renderings),
              "supersample": SUPERSAMPLE}
    final = root / name
    remove_leftovers(root, targets=lambda target: target.startswith("synthetic-"))  # killed renderings
    if not (final / "params.json").exists():
        with output_lock(final):
            if not (final / "params.json").exists():  # another process may have rendered it while we waited
                tmp = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                try:
                    _write_set(tmp, params)
                    os.rename(tmp, final)
                finally:
                    if tmp.exists():
                        shutil.rmtree(tmp, ignore_errors=True)
    found = json.loads((final / "params.json").read_text())
    if found != params:
        raise StimulusError(
            f"{final} holds a synthetic set made with other parameters ({found}); expected {params}. "
            f"Delete that folder to regenerate it, or pass another root.")
    return _read_set(final, name, params)


def _write_set(folder: Path, params: dict) -> None:
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    n, seed, size, renderings = params["n"], params["seed"], params["image_size"], params["renderings"]
    width = max(5, len(str(n - 1)))
    caption_lines, scene_lines = [], []
    for i in range(n):
        scene_id = f"scene{i:0{width}d}"
        desc = describe_scene(seed, i, scene_id)
        captions, choices = scene_captions(desc, np.random.default_rng([seed, i, 1]))
        wrong_attr, wrong_desc = wrong_description(desc, np.random.default_rng([seed, i, 2]))
        wrong = _CAPTION_TEMPLATES[0](wrong_desc, choices[0])
        for j in range(renderings):
            image_id = scene_id if renderings == 1 else f"{scene_id}-r{j}"
            rgb, mask, render = render_scene(desc, size, np.random.default_rng([seed, i, 3, j]))
            Image.fromarray(rgb).save(folder / "images" / f"{image_id}.png", compress_level=1)
            Image.fromarray(mask).save(folder / "masks" / f"{image_id}.png", compress_level=1)
            for k, c in enumerate(captions):
                caption_lines.append(json.dumps({"image_id": image_id, "caption_id": f"{image_id}#{k}", "caption": c}))
            scene_lines.append(json.dumps({
                "image_id": image_id, "scene_id": scene_id, "rendering": j,
                "group": scene_id if renderings > 1 else None, "description": desc,
                "wrong_caption": wrong, "wrong_attribute": wrong_attr, "wrong_description": wrong_desc,
                "render": render}))
    (folder / "captions.jsonl").write_text("\n".join(caption_lines) + "\n")
    (folder / "scenes.jsonl").write_text("\n".join(scene_lines) + "\n")
    # params.json last: its presence marks a complete folder.
    (folder / "params.json").write_text(json.dumps(params, indent=1, sort_keys=True))


def _read_set(folder: Path, name: str, params: dict) -> StimulusSet:
    captions: dict[str, list[str]] = {}
    with open(folder / "captions.jsonl") as f:
        for line in f:
            row = json.loads(line)
            captions.setdefault(row["image_id"], []).append(row["caption"])
    stimuli = []
    with open(folder / "scenes.jsonl") as f:
        for line in f:
            row = json.loads(line)
            image_id = row["image_id"]
            extra = {k: row[k] for k in ("scene_id", "rendering", "description", "wrong_caption", "wrong_attribute",
                                         "wrong_description")}
            stimuli.append(Stimulus(image_id=image_id, image=folder / "images" / f"{image_id}.png",
                                    captions=tuple(captions[image_id]), mask=folder / "masks" / f"{image_id}.png",
                                    group=row["group"], extra=extra))
    expected = params["n"] * params["renderings"]
    if len(stimuli) != expected:
        raise StimulusError(f"{folder} lists {len(stimuli)} images, expected {expected}; delete it to regenerate")
    return StimulusSet(name=name, stimuli=stimuli, source=str(folder),
                       description=(f"{params['n']} synthetic scenes (seed {params['seed']}, "
                                    f"{params['image_size']} px, {params['renderings']} rendering(s) each)"))


# ---------------------------------------------------------------------------------------------------------------
# Scene descriptions


def _contrast_ok(color: str, background: str) -> bool:
    a, b = np.array(COLORS[color], float), np.array(BACKGROUNDS[background], float)
    return color != background and float(np.linalg.norm(a - b)) >= _MIN_CONTRAST


def _feasible_positions(size: str, count: int) -> list[tuple[str, ...]]:
    """Slot combinations whose objects cannot overlap or leave the image, whatever the jitter."""
    r = SIZES[size] * (1 + SIZE_JITTER)
    slack = 2 * POSITION_JITTER * math.sqrt(2)
    out = []
    for combo in itertools.combinations(POSITIONS, count):
        centres = [POSITIONS[p] for p in combo]
        if all(math.dist(a, b) - slack > 2 * r + 0.01 for a, b in itertools.combinations(centres, 2)):
            out.append(combo)
    return out


def describe_scene(seed: int, index: int, scene_id: str) -> dict:
    """The description of scene ``index`` (a pure function of ``seed`` and ``index``)."""
    rng = np.random.default_rng([seed, index, 0])
    shape = SHAPES[rng.integers(len(SHAPES))]
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    colors = [c for c in COLORS if _contrast_ok(c, background)]
    color = colors[rng.integers(len(colors))]
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    count = int(rng.integers(1, 4))
    sizes = [s for s in SIZES if _feasible_positions(s, count)]
    size = sizes[rng.integers(len(sizes))]
    combos = _feasible_positions(size, count)
    positions = list(combos[rng.integers(len(combos))])
    return {"scene_id": scene_id, "shape": shape, "color": color, "size": size, "count": count,
            "positions": positions, "background": background, "texture": texture}


def wrong_description(desc: dict, rng: np.random.Generator) -> tuple[str, dict]:
    """``(attribute, description)`` with exactly one of colour, shape or count changed.

    A changed count adds position slots (not used by the scene) or drops the last ones.
    """
    attribute = ("color", "shape", "count")[rng.integers(3)]
    wrong = {**desc, "positions": list(desc["positions"])}
    if attribute == "color":
        options = [c for c in COLORS if c != desc["color"] and _contrast_ok(c, desc["background"])]
        wrong["color"] = options[rng.integers(len(options))]
    elif attribute == "shape":
        options = [s for s in SHAPES if s != desc["shape"]]
        wrong["shape"] = options[rng.integers(len(options))]
    else:
        options = [c for c in (1, 2, 3) if c != desc["count"]]
        count = int(options[rng.integers(len(options))])
        free = [p for p in POSITIONS if p not in desc["positions"]]
        wrong["count"] = count
        wrong["positions"] = (desc["positions"] + free)[:count]
    return attribute, wrong


# ---------------------------------------------------------------------------------------------------------------
# Captions


def _plural(shape: str, count: int) -> str:
    if count == 1:
        return shape
    return shape + ("es" if shape.endswith(("s", "x", "ch", "sh")) else "s")


def _article(word: str) -> str:
    return "an" if word[0] in "aeio" or (word[0] == "u" and not word.startswith("uni")) else "a"


def _choose(rng: np.random.Generator, desc: dict) -> dict:
    """Synonym choices for one caption."""
    return {"size": _SIZE_WORDS[desc["size"]][rng.integers(3)],
            "texture": _TEXTURE_WORDS[desc["texture"]][rng.integers(3)],
            "positions": {p: _POSITION_WORDS[p][rng.integers(2)] for p in POSITIONS},
            "bg_noun": _BG_NOUNS[rng.integers(2)], "verb": int(rng.integers(len(_VERBS)))}


def _where_each(desc: dict, ch: dict) -> str:
    """"on the left" or "one on the left and one at the top"."""
    phrases = [ch["positions"][p] for p in desc["positions"]]
    if len(phrases) == 1:
        return phrases[0]
    each = [f"one {p}" for p in phrases]
    return ", ".join(each[:-1]) + " and " + each[-1]


def _where_all(desc: dict, ch: dict) -> str:
    """"on the left" or "on the left and at the top"."""
    phrases = [ch["positions"][p] for p in desc["positions"]]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _template_0(d: dict, ch: dict) -> str:
    # "A large red circle on the left against a plain blue background."
    noun = _plural(d["shape"], d["count"])
    bg = f"{ch['texture']} {d['background']} {ch['bg_noun']}"
    where, against = _where_each(d, ch), f"against {_article(bg)} {bg}"
    if d["count"] == 1:
        return f"{_article(ch['size']).capitalize()} {ch['size']} {d['color']} {noun} {where} {against}."
    return f"{_NUMBER_WORDS[d['count']].capitalize()} {ch['size']} {d['color']} {noun}, {where}, {against}."


def _template_1(d: dict, ch: dict) -> str:
    # "There is one big red circle in the middle of a solid blue image."
    be = "is" if d["count"] == 1 else "are"
    bg = f"{ch['texture']} {d['background']} image"
    return (f"There {be} {_NUMBER_WORDS[d['count']]} {ch['size']} {d['color']} {_plural(d['shape'], d['count'])} "
            f"{_where_all(d, ch)} of {_article(bg)} {bg}.")


def _template_2(d: dict, ch: dict) -> str:
    # "A striped blue background with a single large red circle on the left."
    quantity = "a single" if d["count"] == 1 else _NUMBER_WORDS[d["count"]]
    sep = " " if d["count"] == 1 else ", "
    head = f"{ch['texture']} {d['background']} {ch['bg_noun']}"
    return (f"{_article(head).capitalize()} {head} with {quantity} {ch['size']} {d['color']} "
            f"{_plural(d['shape'], d['count'])}{sep}{_where_each(d, ch)}.")


def _template_3(d: dict, ch: dict) -> str:
    # "On a plain blue backdrop, one red circle of large size sits on the left."
    verb = _VERBS[ch["verb"]][0 if d["count"] == 1 else 1]
    head = f"{ch['texture']} {d['background']} {ch['bg_noun']}"
    return (f"On {_article(head)} {head}, {_NUMBER_WORDS[d['count']]} {d['color']} {_plural(d['shape'], d['count'])} "
            f"of {d['size']} size {verb} {_where_all(d, ch)}.")


_CAPTION_TEMPLATES = (_template_0, _template_1, _template_2, _template_3)


def scene_captions(desc: dict, rng: np.random.Generator) -> tuple[list[str], list[dict]]:
    """The 4 paraphrases of ``desc`` and the synonym choices used by each (the wrong caption reuses choice 0)."""
    choices = [_choose(rng, desc) for _ in _CAPTION_TEMPLATES]
    return [t(desc, ch) for t, ch in zip(_CAPTION_TEMPLATES, choices)], choices


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of ``shape`` inside the circle of radius ``r`` around (cx, cy); image y grows downwards."""
    def ring(k, radius, phase=-math.pi / 2):
        angles = [phase + 2 * math.pi * t / k for t in range(k)]
        return [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]

    if shape == "square":
        h = 0.7 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return ring(3, r)
    if shape == "star":
        outer, inner = ring(5, r), ring(5, 0.42 * r, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        a, w = 0.9 * r, 0.3 * r
        return [(cx - w, cy - a), (cx + w, cy - a), (cx + w, cy - w), (cx + a, cy - w), (cx + a, cy + w),
                (cx + w, cy + w), (cx + w, cy + a), (cx - w, cy + a), (cx - w, cy + w), (cx - a, cy + w),
                (cx - a, cy - w), (cx - w, cy - w)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)]
    if shape == "hexagon":
        return ring(6, 0.92 * r, 0.0)
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        y = y - (y.max() + y.min()) / 2  # centre the bounding box
        s = r / float(np.sqrt(x**2 + y**2).max())
        return [(cx + s * float(a), cy + s * float(b)) for a, b in zip(x, y)]
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def _background(desc: dict, side: int, rng: np.random.Generator):
    """The ``side`` x ``side`` background as an RGB ``PIL.Image`` and the texture parameters drawn for it."""
    from PIL import Image

    base = np.array(BACKGROUNDS[desc["background"]], dtype=np.float32)
    texture = desc["texture"]
    if texture == "plain":
        return Image.new("RGB", (side, side), BACKGROUNDS[desc["background"]]), {}
    coords = (np.arange(side, dtype=np.float32) + 0.5) / side
    xx, yy = coords[None, :], coords[:, None]
    if texture == "gradient":
        angle = float(rng.uniform(0, 2 * np.pi))
        along = np.float32(math.cos(angle)) * (xx - 0.5) + np.float32(math.sin(angle)) * (yy - 0.5)
        t = along * np.float32(math.sqrt(2)) + 0.5  # in [0, 1] over the image
        light, dark = base + 0.35 * (255 - base), 0.65 * base
        img = light + (dark - light) * np.clip(t, 0, 1)[..., None]
        params = {"angle": angle}
    elif texture == "stripes":
        angle = float(rng.choice([0.0, 45.0, 90.0, 135.0]))
        period = float(rng.uniform(0.08, 0.18))
        a = math.radians(angle)
        phase = (np.float32(math.cos(a)) * xx + np.float32(math.sin(a)) * yy) / np.float32(period)
        band = (phase - np.floor(phase)) < 0.5
        shade = 0.75 * base if base.mean() > 110 else base + 0.3 * (255 - base)
        img = np.where(band[..., None], shade, base)
        params = {"angle": angle, "period": period}
    elif texture == "noise":
        # Noise on the final pixel grid (each value repeated over its SUPERSAMPLE x SUPERSAMPLE block).
        small = side // SUPERSAMPLE
        noise = rng.normal(0.0, 22.0, size=(small, small, 3)).astype(np.float32)
        img = base + noise.repeat(SUPERSAMPLE, axis=0).repeat(SUPERSAMPLE, axis=1)
        params = {"sigma": 22.0}
    else:
        raise ValueError(f"unknown texture {texture!r}; known: {TEXTURES}")
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)), params


def render_scene(desc: dict, image_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw one rendering of ``desc``.

    Returns:
      (RGB image ``[image_size, image_size, 3]`` uint8, label map ``[image_size, image_size]`` uint8,
      the jitter and texture parameters drawn).
    """
    from PIL import Image, ImageDraw

    ss = SUPERSAMPLE
    side = image_size * ss
    canvas, texture_params = _background(desc, side, rng)
    labels = Image.new("L", (side, side), 0)
    draw, draw_labels = ImageDraw.Draw(canvas), ImageDraw.Draw(labels)
    color = COLORS[desc["color"]]
    objects = []
    for k, pos in enumerate(desc["positions"], start=1):
        dx, dy = rng.uniform(-POSITION_JITTER, POSITION_JITTER, size=2)
        scale = float(rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER))
        cx, cy = (POSITIONS[pos][0] + dx) * side, (POSITIONS[pos][1] + dy) * side
        r = SIZES[desc["size"]] * scale * side
        if desc["shape"] == "circle":
            box = [cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r]
            draw.ellipse(box, fill=color)
            draw_labels.ellipse(box, fill=k)
        else:
            poly = _shape_polygon(desc["shape"], cx, cy, r)
            draw.polygon(poly, fill=color)
            draw_labels.polygon(poly, fill=k)
        objects.append({"k": k, "position": pos, "dx": float(dx), "dy": float(dy), "scale": scale})
    rgb = np.asarray(canvas.reduce(ss))  # exact box average of each ss x ss block
    # Objects are separated by more than a pixel, so a pixel touches at most one object: it belongs to that
    # object when at least half of its sub-pixels are covered.
    lab = np.asarray(labels)
    blocks = [lab[i::ss, j::ss] for i in range(ss) for j in range(ss)]  # the sub-pixels of each pixel
    covered = sum((b > 0).astype(np.uint8) for b in blocks)
    owner = np.maximum.reduce(blocks)
    mask = np.where(2 * covered >= ss * ss, owner, 0).astype(np.uint8)
    return rgb, mask, {"objects": objects, "texture": texture_params}
