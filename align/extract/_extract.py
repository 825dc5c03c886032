"""``extract``: run one frozen model over a stimulus set and store every layer, one store per pooling."""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from align.extract._encoder import Encoder
from align.extract._encoder import check_dtype
from align.extract._layers import layer_patterns
from align.extract._layers import select_layers
from align.extract._layers import selection_tag
from align.extract._pooling import check_poolings
from align.extract._spec import ModelSpec


def load_encoder(spec: ModelSpec, *, dtype: str = "float32", device: str = "auto",
                 poolings: Sequence[str] = ("mean",), load_options: dict | None = None) -> Encoder:
    """Load a materialized spec with its backend ("hf", "timm" or "torch_module"). ``load_options``: the
    transformers backend's big-model options (``device_map``, ``low_cpu_mem_usage``; see ``load_hf``)."""
    if load_options:
        if spec.backend != "hf":
            raise ValueError(f"{sorted(load_options)} apply to transformers models only; {spec.name!r} is a "
                             f"{spec.backend!r} model")
        from align.extract._hf import load_hf

        return load_hf(spec, dtype=dtype, device=device, poolings=poolings, **load_options)
    if spec.backend == "hf":
        from align.extract._hf import load_hf as load
    elif spec.backend == "timm":
        from align.extract._timm import load_timm as load
    else:
        from align.extract._hooks import load_module as load
    return load(spec, dtype=dtype, device=device, poolings=poolings)


def _resolve(model: str | ModelSpec) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    from align.extract._sources import resolve_model

    return resolve_model(model)


def stimulus_rows(modality: str, stimuli, captions: str | int = "all", image_transform: Callable | None = None):
    """Row ids, group ids, and a loader from row number to the model input, as ``extract`` reads a stimulus set.

    Vision: rows are the image ids (no groups); the loader reads ``stimuli.load_image(i)``, then applies
    ``image_transform(image, stimuli.load_mask(i))`` if given. Language: rows are the caption ids of
    ``stimuli.caption_table(captions)``, grouped by image id; the loader returns the caption text.
    """
    if modality == "vision":
        def load(i: int):
            image = stimuli.load_image(i)
            return image if image_transform is None else image_transform(image, stimuli.load_mask(i))

        return stimuli.image_ids, None, load
    table = stimuli.caption_table(captions)
    texts = [text for _, _, text in table]
    return [cid for cid, _, _ in table], [iid for _, iid, _ in table], texts.__getitem__


def extract(model: str | ModelSpec, stimuli, root: str | Path, *, poolings: str | Sequence[str] | None = None,
            batch_size: int = 16, dtype: str = "float32", device: str = "auto", condition: str = "original",
            image_transform: Callable | None = None, captions: str | int = "all", config_fingerprint: str = "",
            progress: bool = True, layers: str | Sequence[str] | None = None,
            load_options: dict | None = None) -> dict[str, Path]:
    """Store every layer of a frozen model on a stimulus set, one finished store per pooling.

    Vision models read the images (``stimuli.load_image``, then ``image_transform(image, mask)`` if given); rows
    are image ids. Language models read the captions (``stimuli.caption_table(captions)``); rows are caption ids
    ``"{image_id}#{k}"`` with group id = image id. One forward pass per batch serves every pooling.

    Finished stores are skipped (the model is not even loaded when all are finished). An interrupted run resumes:
    only stimuli some pooling still lacks are computed, and each store receives exactly the ids it lacks; what a
    killed run left (temporary files, parts beside a finished store) is removed. A store is written under its lock
    (``<store>.lock``): a second process extracting it waits, then reuses the finished store. Inference
    is deterministic (eval mode, fixed seed, deterministic torch algorithms).

    Args:
      model: a short name, Hugging Face id, local folder or ``.gguf`` file (resolved by ``resolve_model``), or a
        ``ModelSpec``.
      stimuli: the ``StimulusSet``.
      root: output root; stores go to ``store_path(root, stimuli.name, condition, spec.safe_name, pooling,
        stimulus_ids=<row ids>)``: the file name carries the hash of the ordered row ids, so another subset (or
        another caption selection) of the same set gets a store of its own.
      poolings: vision "cls" | "mean" (default both); language "mean" | "last" | "first" (default mean, last).
      batch_size: stimuli per forward pass.
      dtype: compute dtype, "float32", "bfloat16" or "float16" (stores are float32 either way).
      device: "auto" (cuda > mps > cpu) or a torch device string.
      condition: name of the stimulus condition (e.g. a perturbation), part of the store path.
      image_transform: ``(PIL.Image, mask [H, W] uint8 | None) -> PIL.Image`` applied before preprocessing.
      captions: "all" or a caption index k (language models only).
      config_fingerprint: fingerprint of the settings that made the store; recorded in its meta, and a resumed run
        with a different one is refused by the store.
      progress: show a tqdm progress bar.
      layers: fnmatch pattern(s) over the layer names the model records (``"layer_*"``; see ``align show-model``);
        only matching layers are stored, in depth order. None (default) stores every layer. A selection's stores
        live in a model folder of their own (``<model>~layers-<hash>``), so they never collide with the full store.
      load_options: big-model options of transformers models, ``{"device_map": "auto", "low_cpu_mem_usage":
        True}`` (``[extract]`` keys; see ``align.extract._hf.load_hf``); they change placement, not the values.

    Returns:
      pooling -> path of the finished store.

    Raises:
      StimulusError: an unreadable image (named), before anything of its batch is written.
      NonFiniteActivationError: NaN/inf activations (names the model, layer and stimuli; try dtype="float32").
      PoolingError: a pooling the model does not support (e.g. "cls" on a CNN), before anything is written.
      ValueError: a ``layers`` pattern matches no layer (the message lists the model's layers), before anything is
        written.
    """
    return extract_stores(model, stimuli, root, LocalSource(device=device, load_options=load_options),
                          poolings=poolings, batch_size=batch_size, dtype=dtype, condition=condition,
                          image_transform=image_transform, captions=captions, config_fingerprint=config_fingerprint,
                          progress=progress, layers=layers)


#: ``batches(rows, poolings, keep_layers, batch_size)``: a generator of ``(batch rows, {pooling: [b, d_l] array per
#: kept layer})``, consecutive batches of at most ``batch_size`` rows that together are ``rows`` (row numbers of the
#: stimulus set, maybe none) in order. Closed early when writing a batch fails.
Batches = Callable[[list[int], list[str], list[int], int],
                   Generator[tuple[list[int], dict[str, list[np.ndarray]]], None, None]]


@dataclass(frozen=True)
class LoadedModel:
    """A model opened by a ``BatchSource``: what the stores' writers record of it, and its forward passes.

    Attributes:
      spec: the materialized ``ModelSpec``.
      layer_names: every layer the model records, in depth order.
      architecture: the architecture the loaded model reports.
      info: further provenance of the encoder (preprocessing, image size, ...), merged into the stores' meta.
      batches: the forward passes (see ``Batches``): row numbers of the stimulus set in, pooled activations out.
    """

    spec: ModelSpec
    layer_names: list[str]
    architecture: str
    info: dict
    batches: Batches


class BatchSource:
    """Where ``extract_stores`` runs the forward passes; the stores are written by the caller's process either way.

    Attributes:
      label: appended to the progress bar's description (e.g. ``", ray"``).
    """

    label = ""

    def prepare(self) -> None:
        """Called once some store is left to write, before any lock is taken (e.g. join a cluster)."""

    def open(self, spec: ModelSpec, poolings: list[str], *, dtype: str, stimuli, captions: str | int,
             image_transform: Callable | None) -> LoadedModel:
        """Load ``spec`` (not yet materialized) for ``poolings`` in ``dtype``, reading stimuli as
        ``stimulus_rows(spec.modality, stimuli, captions, image_transform)`` does."""
        raise NotImplementedError


class LocalSource(BatchSource):
    """The forward passes in this process, on ``device`` ("auto" or a torch device string); ``load_options``: the
    transformers backend's big-model options (see ``load_encoder``)."""

    def __init__(self, device: str = "auto", load_options: dict | None = None):
        self.device, self.load_options = device, load_options

    def open(self, spec, poolings, *, dtype, stimuli, captions, image_transform) -> LoadedModel:
        spec = spec.materialize()
        encoder = load_encoder(spec, dtype=dtype, device=self.device, poolings=poolings,
                               load_options=self.load_options)
        load = stimulus_rows(spec.modality, stimuli, captions, image_transform)[2]

        def batches(rows, poolings, keep_layers, batch_size):
            every = len(keep_layers) == len(encoder.layer_names)
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                pooled = encoder.encode([load(i) for i in batch], poolings)  # unreadable images raise here
                yield batch, pooled if every else {p: [a[k] for k in keep_layers] for p, a in pooled.items()}

        return LoadedModel(spec, list(encoder.layer_names), encoder.architecture, encoder.info, batches)


def extract_stores(model: str | ModelSpec, stimuli, root: str | Path, source: BatchSource, *,
                   poolings: str | Sequence[str] | None = None, batch_size: int = 16, dtype: str = "float32",
                   condition: str = "original", image_transform: Callable | None = None, captions: str | int = "all",
                   config_fingerprint: str = "", progress: bool = True,
                   layers: str | Sequence[str] | None = None) -> dict[str, Path]:
    """``extract`` with the forward passes of ``source`` (``LocalSource``, or e.g. the Ray backend's): the same
    store paths, skipping of finished stores, removal of leftovers, locks, provenance, layer selection and resume.

    Args:
      model, stimuli, root, poolings, batch_size, dtype, condition, image_transform, captions, config_fingerprint,
        progress, layers: as ``extract``.
      source: the ``BatchSource``; ``prepare`` runs only when some store is left to write, ``open`` only under the
        stores' locks.

    Returns:
      pooling -> path of the finished store.

    Raises:
      RuntimeError: the source returned rows out of stimulus order or too few; nothing of that batch is written
        and the stores stay unfinished.
      And the errors of ``extract``.
    """
    from align._locks import output_locks
    from align.store import store_path
    from align.store import remove_store_leftovers

    spec = _resolve(model)
    poolings = check_poolings(poolings, spec.modality)
    check_dtype(dtype)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    ids, groups, _ = stimulus_rows(spec.modality, stimuli, captions, image_transform)
    tag = selection_tag(layers)
    folder = f"{spec.safe_name}~{tag}" if tag else spec.safe_name
    paths = {p: store_path(root, stimuli.name, condition, folder, p, stimulus_ids=ids) for p in poolings}
    for path in paths.values():
        remove_store_leftovers(path)  # temporaries of killed writers; parts beside a finished store
    todo = [p for p in poolings if not paths[p].exists()]
    if not todo:
        return paths
    source.prepare()
    # one process per store: a second run of the same stores waits here, then finds them finished
    with output_locks([paths[p] for p in todo], log=_to_stderr if progress else None):
        todo = [p for p in todo if not paths[p].exists()]
        if todo:
            opened = source.open(spec, todo, dtype=dtype, stimuli=stimuli, captions=captions,
                                 image_transform=image_transform)
            _write_stores(opened, stimuli, ids, groups, {p: paths[p] for p in todo}, label=source.label,
                          batch_size=batch_size, dtype=dtype, condition=condition,
                          config_fingerprint=config_fingerprint, progress=progress, layers=layers)
    return paths


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _write_stores(model: LoadedModel, stimuli, ids: list[str], groups, paths: dict[str, Path], *, label: str,
                  batch_size: int, dtype: str, condition: str, config_fingerprint: str, progress: bool,
                  layers=None) -> None:
    """Compute with ``model.batches`` the stimuli that the stores ``paths`` (pooling -> path, none finished) still
    lack, write them in stimulus order and finalize the stores; the caller holds their locks."""
    from tqdm import tqdm

    from align.store import NonFiniteActivationError
    from align.store import StoreWriter

    spec = model.spec
    keep_layers = select_layers(model.layer_names, layers, model=spec.name)
    selected = len(keep_layers) < len(model.layer_names)
    meta = {"model": spec.name, "model_source": spec.source, "revision": spec.revision,
            "architecture": spec.architecture or model.architecture, "modality": spec.modality, "dtype": dtype,
            "stimulus_set": stimuli.name, "condition": condition, "config_fingerprint": config_fingerprint,
            **model.info, **({"layer_selection": list(layer_patterns(layers))} if selected else {})}
    writers = {p: StoreWriter(path, stimulus_ids=ids, layer_names=[model.layer_names[k] for k in keep_layers],
                              meta={**meta, "pooling": p}, groups=groups) for p, path in paths.items()}
    writers = {p: w for p, w in writers.items() if not w.complete}
    pending = {p: set(w.pending_ids()) for p, w in writers.items()}
    needed = set().union(*pending.values())
    rows = [i for i, sid in enumerate(ids) if sid in needed]

    done = 0
    with (tqdm(total=len(rows), disable=not progress, desc=f"{spec.name} ({spec.modality}{label})",
               unit=" stimuli") as bar,
          closing(model.batches(rows, list(writers), keep_layers, batch_size)) as batches):
        for batch, pooled in batches:
            if batch != rows[done:done + len(batch)]:
                raise RuntimeError(f"the forward passes returned rows {batch[:5]} where rows {rows[done:done + 5]} "
                                   f"were due; nothing of this batch was written")
            done += len(batch)
            for p, writer in writers.items():
                keep = [k for k, i in enumerate(batch) if ids[i] in pending[p]]
                if not keep:
                    continue
                arrays = pooled[p] if len(keep) == len(batch) else [a[np.asarray(keep)] for a in pooled[p]]
                try:
                    writer.write_part([ids[batch[k]] for k in keep], arrays)
                except NonFiniteActivationError as e:
                    raise NonFiniteActivationError(
                        f"model {spec.name!r} (dtype {dtype}, pooling {p!r}) on stimulus set {stimuli.name!r}: "
                        f"{e}") from None
            bar.update(len(batch))
    if done != len(rows):
        raise RuntimeError(f"the forward passes returned {done} of {len(rows)} stimuli; the stores were left "
                           f"unfinished")
    for writer in writers.values():
        writer.finalize()
