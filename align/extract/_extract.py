"""``extract``: run one frozen model over a stimulus set and store every layer, one store per pooling."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
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


def _rows(spec: ModelSpec, stimuli, captions, image_transform):
    """Row ids, group ids, and a loader from row index to the model input (PIL image or caption text)."""
    if spec.modality == "vision":
        def load(i: int):
            image = stimuli.load_image(i)
            if image_transform is not None:
                image = image_transform(image, stimuli.load_mask(i))
            return image

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
    from align._locks import output_locks
    from align.store import store_path
    from align.store import remove_store_leftovers

    spec = _resolve(model)
    poolings = check_poolings(poolings, spec.modality)
    check_dtype(dtype)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    ids, groups, load = _rows(spec, stimuli, captions, image_transform)
    tag = selection_tag(layers)
    folder = f"{spec.safe_name}~{tag}" if tag else spec.safe_name
    paths = {p: store_path(root, stimuli.name, condition, folder, p, stimulus_ids=ids) for p in poolings}
    for path in paths.values():
        remove_store_leftovers(path)  # temporaries of killed writers; parts beside a finished store
    todo = [p for p in poolings if not paths[p].exists()]
    if not todo:
        return paths
    # one process per store: a second run of the same stores waits here, then finds them finished
    with output_locks([paths[p] for p in todo], log=_to_stderr if progress else None):
        todo = [p for p in todo if not paths[p].exists()]
        if todo:
            _write_stores(spec, stimuli, ids, groups, load, {p: paths[p] for p in todo}, batch_size=batch_size,
                          dtype=dtype, device=device, condition=condition, config_fingerprint=config_fingerprint,
                          progress=progress, layers=layers, load_options=load_options)
    return paths


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _write_stores(spec: ModelSpec, stimuli, ids: list[str], groups, load: Callable, paths: dict[str, Path], *,
                  batch_size: int, dtype: str, device: str, condition: str, config_fingerprint: str,
                  progress: bool, layers=None, load_options=None) -> None:
    """Run the model over the stimuli that the stores ``paths`` (pooling -> path, none finished) still lack and
    finalize them; the caller holds their locks."""
    from tqdm import tqdm

    from align.store import NonFiniteActivationError
    from align.store import StoreWriter

    todo = list(paths)
    spec = spec.materialize()
    encoder = load_encoder(spec, dtype=dtype, device=device, poolings=todo, load_options=load_options)
    keep_layers = select_layers(encoder.layer_names, layers, model=spec.name)
    selected = len(keep_layers) < len(encoder.layer_names)
    meta = {"model": spec.name, "model_source": spec.source, "revision": spec.revision,
            "architecture": spec.architecture or encoder.architecture, "modality": spec.modality, "dtype": dtype,
            "stimulus_set": stimuli.name, "condition": condition, "config_fingerprint": config_fingerprint,
            **encoder.info, **({"layer_selection": list(layer_patterns(layers))} if selected else {})}
    writers = {p: StoreWriter(paths[p], stimulus_ids=ids, layer_names=[encoder.layer_names[k] for k in keep_layers],
                              meta={**meta, "pooling": p}, groups=groups) for p in todo}
    writers = {p: w for p, w in writers.items() if not w.complete}
    pending = {p: set(w.pending_ids()) for p, w in writers.items()}
    needed = set().union(*pending.values())
    rows = [i for i, sid in enumerate(ids) if sid in needed]

    with tqdm(total=len(rows), disable=not progress, desc=f"{spec.name} ({spec.modality})",
              unit=" stimuli") as bar:
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            inputs = [load(i) for i in batch]  # unreadable images raise here, before this batch writes anything
            pooled = encoder.encode(inputs, list(writers))
            if selected:
                pooled = {p: [arrays[k] for k in keep_layers] for p, arrays in pooled.items()}
            for p, writer in writers.items():
                keep = [k for k, i in enumerate(batch) if ids[i] in pending[p]]
                if not keep:
                    continue
                layers = pooled[p] if len(keep) == len(batch) else [a[np.asarray(keep)] for a in pooled[p]]
                try:
                    writer.write_part([ids[batch[k]] for k in keep], layers)
                except NonFiniteActivationError as e:
                    raise NonFiniteActivationError(
                        f"model {spec.name!r} (dtype {dtype}, pooling {p!r}) on stimulus set {stimuli.name!r}: "
                        f"{e}") from None
            bar.update(len(batch))
    for writer in writers.values():
        writer.finalize()
