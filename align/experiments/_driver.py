"""The one experiment driver: a step of an experiment is a :class:`Plan` (its conditions and what one job computes);
:func:`run_plan` enumerates its jobs (store pair x metric x condition x preprocess), keys, caches and logs them.

A job is a pure function of its inputs (store fingerprints and row orders, the metric, the experiment's
parameters); its key is a hash of those (:func:`job_key`), its output ``<output>/<plan.folder>/<key>.parquet`` is
written atomically (``align.results.write_results``), so a rerun skips finished jobs and an interrupted run resumes.
A job runs under its lock (``<key>.parquet.lock``), so two runs of one config share the work instead of racing. The
log says how many jobs are done and about how long the rest will take (:class:`JobClock`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from align._locks import output_lock
from align._locks import remove_leftovers


def print_log(msg: str) -> None:
    """The default log of the experiments: print, flushed."""
    print(msg, flush=True)


def job_key(**content) -> str:
    """16 hex chars: SHA-256 of the JSON of ``content`` (keys sorted)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def store_identity(store) -> list:
    """What identifies a store's content for a job key: its config fingerprint, row order, pooling, condition."""
    meta = store.meta
    return [meta.get("config_fingerprint"), store.order_hash, meta.get("pooling"), meta.get("condition")]


class JobClock:
    """Counts a known number of jobs and estimates the time left from the mean time of those computed so far
    (skipped jobs cost nothing): ``clock.done(seconds)`` -> ``"[3/12, about 2 min left]"``."""

    def __init__(self, total: int):
        self.total, self.count, self.computed, self.seconds = int(total), 0, 0, 0.0

    def done(self, seconds: float | None = None) -> str:
        """Record one job (``seconds`` None: skipped) and return its progress tag."""
        self.count += 1
        if seconds is not None:
            self.computed += 1
            self.seconds += seconds
        left = self.total - self.count
        if not left or not self.computed:
            return f"[{self.count}/{self.total}]"
        eta = left * self.seconds / self.computed
        when = f"{eta:.0f} s" if eta < 120 else f"{eta / 60:.0f} min"
        return f"[{self.count}/{self.total}, about {when} left]"


def cached_job(path: Path, compute: Callable[[], pd.DataFrame], *, label: str, log: Callable[[str], None],
               clock: JobClock | None = None, detail: str = "") -> pd.DataFrame:
    """Read ``path`` if it exists, else compute the rows, write them atomically and return them.

    The job is computed under its lock (``<path>.lock``): a second process running the same job waits, then reads
    the rows the first wrote. The log line names the job (``label``), with ``detail`` (e.g. the grid's size) and
    the seconds when it was computed, and with a ``clock`` the progress tag.
    """
    from align.results import read_results, write_results

    if not path.exists():
        with output_lock(path, log=log):
            if not path.exists():  # else another process finished it while we waited
                t0 = time.perf_counter()
                write_results(compute(), path)
                seconds = time.perf_counter() - t0
                tag = f"{clock.done(seconds)} " if clock else ""
                log(f"  {tag}{label}: {detail + ' in ' if detail else ''}{seconds:.1f} s")
                return read_results(path)
    tag = f"{clock.done()} " if clock else ""
    log(f"  {tag}{label}: exists, skipped")
    return read_results(path)


@dataclasses.dataclass(eq=False)
class Pair:
    """A (vision store, caption store) pair; ``load(name, fn)`` keeps what its jobs share (its layers) while the
    driver runs its jobs, so each pair is read once however many metrics and conditions score it."""

    vision: Any
    language: Any
    _loaded: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        v, l = self.vision.meta, self.language.meta
        return f"{v.get('model')}({v.get('pooling')}) x {l.get('model')}({l.get('pooling')})"

    def load(self, name: Hashable, fn: Callable[[], Any]) -> Any:
        """``fn()`` the first time ``name`` is asked for, the same object after that."""
        if name not in self._loaded:
            self._loaded[name] = fn()
        return self._loaded[name]

    def release(self) -> None:
        """Forget what :meth:`load` kept."""
        self._loaded.clear()


@dataclasses.dataclass(frozen=True)
class Cell:
    """One job: a plan step, a store pair, a metric, a condition (the plan's own label, None when it has none) and
    a preprocessing option."""

    step: str
    pair: Pair
    metric: str
    condition: Any = None
    preprocess: str = "none"

    def of(self, step: str, condition: Any = None) -> Cell:
        """The cell of another step (and condition) of the same pair, metric and preprocessing option."""
        return dataclasses.replace(self, step=step, condition=condition)


#: The rows of the jobs run so far, by cell (what a later step's jobs read, e.g. the baseline grid).
Done = dict[Cell, pd.DataFrame]


@dataclasses.dataclass(frozen=True)
class Plan:
    """One step of an experiment, declaratively.

    Attributes:
      step: its name (a cell's ``step``; later steps find its rows by it).
      folder: where its job files go, under the run's output folder.
      key: ``key(cell, done)``: the job-key content of a cell (everything its rows depend on).
      compute: ``compute(cell, done)``: the rows (a results frame) of a cell. ``done`` holds the rows of the jobs
        run before it (e.g. the earlier steps of the same pair), for a step that depends on them.
      conditions: the conditions of a metric (default one, None; none: the step skips that metric).
      label: the log's name of a cell (default: the store pair, metric, condition and preprocessing option).
      detail: what the log says about a computed cell (e.g. the grid's size), or None.
      write_extra: ``write_extra(cell, done, extra)`` for a step whose ``compute`` returns ``(rows, extra)``: writes
        what a job computes besides its rows (e.g. per-item scores) in the driving process, before the job's file
        (so a job file says both exist), also when the job ran elsewhere. None: ``compute`` returns the rows.
    """

    step: str
    folder: str
    key: Callable[[Cell, Done], dict]
    compute: Callable[[Cell, Done], pd.DataFrame]
    conditions: Callable[[str], Sequence] = lambda metric: (None,)
    label: Callable[[Cell], str] | None = None
    detail: Callable[[Cell], str] | None = None
    write_extra: Callable[[Cell, Done, Any], None] | None = None

    def finish(self, cell: Cell, done: Done, result) -> pd.DataFrame:
        """The rows of what ``compute`` returned (labelled with the cell's preprocessing option where they name
        none), after writing its extra output (``write_extra``), if any."""
        if self.write_extra is None:
            return with_preprocess(result, cell)
        rows, extra = result
        self.write_extra(cell, done, extra)
        return with_preprocess(rows, cell)


def with_preprocess(rows, cell: Cell):
    """``rows`` with a ``preprocess`` column: the cell's option on every row that names none (the experiments'
    peak and summary rows are computed under it but not labelled by their plans; job files written before this
    label are labelled when read). Rows that name an option (a preference contrast on raw features) keep it."""
    if not isinstance(rows, pd.DataFrame) or not len(rows):
        return rows
    if "preprocess" not in rows.columns:
        return rows.assign(preprocess=cell.preprocess)
    if rows["preprocess"].isna().any():
        return rows.assign(preprocess=rows["preprocess"].astype(object).where(rows["preprocess"].notna(),
                                                                              cell.preprocess))
    return rows


def _label(cell: Cell) -> str:
    condition = "" if cell.condition is None else f" {cell.condition}"
    option = "" if cell.preprocess == "none" else f" preprocess={cell.preprocess}"
    return f"{cell.pair.label} {cell.metric}{condition}{option}"


def run_plans(plans: Sequence[Plan], pairs: Iterable[Pair], metrics: Sequence[str],
              preprocess: Sequence[str] = ("none",), *, out: Path, log: Callable[[str], None],
              executor: Executor | None = None) -> Done:
    """Run every job of ``plans`` (skipping those whose file exists); ``{cell: its rows}`` in job order.

    Jobs run pair by pair (one pair's layers are read once and released after its last job), and within a pair
    step by step in the order of ``plans``, so a step reads the rows of the steps before it. Job files go to
    ``out / plan.folder``; temporaries that killed jobs left there are removed first (those of jobs no live process
    holds).

    ``executor`` (e.g. ``align.cluster.RayExecutor``): computes the missing jobs elsewhere instead, step by step
    (each step's jobs at once; a job sees the rows of the earlier steps of its own pair), while this process
    writes each job's file when its rows come back; the files and rows are those of a local run.
    """
    plan_of = {plan.step: plan for plan in plans}
    cells = [Cell(plan.step, pair, m, c, o) for pair in pairs for plan in plans for m in metrics for o in preprocess
             for c in plan.conditions(m)]
    for folder in {plan.folder for plan in plans}:
        remove_leftovers(out / folder, pattern="*.tmp")
    if executor is not None:
        return _run_elsewhere(plan_of, cells, executor, out=out, log=log)
    clock = JobClock(len(cells))
    done: Done = {}
    for i, cell in enumerate(cells):
        plan = plan_of[cell.step]
        path = out / plan.folder / f"{job_key(**plan.key(cell, done))}.parquet"
        done[cell] = with_preprocess(cached_job(
            path, lambda cell=cell, plan=plan: plan.finish(cell, done, plan.compute(cell, done)),
            label=(plan.label or _label)(cell), log=log, clock=clock, detail=plan.detail(cell) if plan.detail else ""),
            cell)
        if i + 1 == len(cells) or cells[i + 1].pair is not cell.pair:
            cell.pair.release()
    return done


def scoring_executor(execution, *, log: Callable[[str], None]) -> Executor | None:
    """Where an experiment's scoring jobs run, for ``run_plans(..., executor=...)``: None (this process) for
    ``[execution] backend = "local"``; for "ray", an ``align.cluster.RayExecutor`` (one Ray task per job, the job
    files written here).

    Called before an experiment's first step, so that a Ray run fails before any work when Ray is not installed or
    ``execution.address`` does not answer.

    Raises:
      ClusterError: backend "ray" without Ray installed, or with an address that is malformed or does not answer.
    """
    if execution.backend != "ray":
        return None
    from align import cluster

    cluster.require_ray()
    if execution.address is not None:
        cluster.check_address(execution.address)
    return cluster.RayExecutor(execution, log=log)


#: ``executor(jobs)``: computes no-argument jobs (each returns its rows) elsewhere and yields ``(index in jobs, rows,
#: seconds)`` as each finishes.
Executor = Callable[[Sequence[Callable[[], pd.DataFrame]]], Iterable[tuple[int, pd.DataFrame, float]]]


def _run_elsewhere(plan_of: dict[str, Plan], cells: list[Cell], executor: Executor, *, out: Path,
                   log: Callable[[str], None]) -> Done:
    """``run_plans`` with ``executor``: each step's missing jobs computed by it, their files written here (under
    the job's lock, unless another run wrote it meanwhile); ``{cell: its rows}`` in job order."""
    from align.results import read_results, write_results

    clock = JobClock(len(cells))
    done: Done = {}
    for step in dict.fromkeys(cell.step for cell in cells):
        plan = plan_of[step]
        label = plan.label or _label
        wave = [cell for cell in cells if cell.step == step]
        paths = {cell: out / plan.folder / f"{job_key(**plan.key(cell, done))}.parquet" for cell in wave}
        todo = []
        for cell in wave:
            if paths[cell].exists():
                done[cell] = with_preprocess(read_results(paths[cell]), cell)
                log(f"  {clock.done()} {label(cell)}: exists, skipped")
            else:
                todo.append(cell)
        jobs = [functools.partial(plan.compute, cell, {c: r for c, r in done.items() if c.pair is cell.pair})
                for cell in todo]
        for index, rows, seconds in executor(jobs):
            cell = todo[index]
            path = paths[cell]
            with output_lock(path, log=log):
                if not path.exists():  # else another run wrote it meanwhile: same inputs, same rows
                    write_results(plan.finish(cell, done, rows), path)
            done[cell] = with_preprocess(read_results(path), cell)
            detail = plan.detail(cell) if plan.detail else ""
            log(f"  {clock.done(seconds)} {label(cell)}: {detail + ' in ' if detail else ''}{seconds:.1f} s")
    return {cell: done[cell] for cell in cells}


def write_exclusions(output_dir: Path, exclusions: dict) -> Path:
    """Write what an experiment left out to ``<output>/exclusions.json``, atomically (never half-written)."""
    from align.store import atomic_path

    path = output_dir / "exclusions.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(exclusions, indent=1))
    return path


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table that is not a results table (e.g. per-item scores) to ``path`` as Parquet, atomically."""
    from align.store import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path
