"""The metric protocol and the registry that the engine, configs and custom probes share.

A metric is a pure function of one pair of layers, split in two for speed:

- ``prepare(X, **kwargs) -> prep``: per-layer work done once (a centered Gram, RDM ranks, kNN sets, an SVD per
  training fold). ``X`` is ``[n, d]`` float32; ``prep`` is a pytree of arrays whose shapes depend only on ``n``
  and, at most, on ``d``. When the prepared shapes of two layers differ (they depend on ``d``), the engine
  zero-pads the narrower layer's features to a common width ONLY for a metric that declares
  ``pad_invariant=True`` (its value does not change when zero feature columns are appended); any other metric is
  split into groups of equal shape, one compiled call per group (slower, never wrong). ``align.check_metric``
  tests the declaration.
- ``compare(prep_x, prep_y, **kwargs) -> scalar`` (or a small pytree of scalars, e.g. ``{"score": ..., ...}``).

Both are pure JAX so the engine can ``vmap``/``lax.map`` them over the whole layer grid in one compiled call.
A metric that is a plain function of ``(X, Y)`` is registered with ``prepare=None``; the engine then passes
raw arrays to ``compare``.
"""

from __future__ import annotations

import dataclasses
import re
import ast
from collections.abc import Callable, Mapping
from typing import Any

INVARIANCES = frozenset({"rotation", "isotropic_scale", "translation", "stimulus_order"})
#: Values of ``Metric.paired_statistic``: None (refit the metric per draw) or "heldout_ridge" (see ``Metric``).
PAIRED_STATISTICS = (None, "heldout_ridge")


@dataclasses.dataclass(frozen=True)
class Metric:
    """A registered alignment measure.

    Attributes:
      name: registry key, used in configs and results tables.
      compare: ``compare(prep_x, prep_y, **kwargs)`` -> scalar; pure JAX.
      prepare: ``prepare(X, **kwargs)`` -> pytree, or None when ``compare`` takes raw ``[n, d]`` arrays.
      symmetric: True when compare(X, Y) == compare(Y, X); asymmetric metrics are computed per direction.
      higher_is_more_aligned: False for distances (e.g. Procrustes angular distance).
      bounds: (low, high) that every value lies in, or None.
      invariances: subset of ``INVARIANCES`` the metric is invariant to (tested by the battery).
      not_invariant_to: one transformation the metric must NOT be invariant to (the battery checks it fails).
      min_n: the smallest number of stimuli the metric accepts.
      pad_invariant: True only when appending zero feature columns to X or Y never changes the value (CKA,
        cosine/euclidean geometry, ridge); then the engine may zero-pad layers of different widths to one width and
        batch them. Default False: a probe is never padded unless it says so (a correlation-distance RDM, which
        centers each stimulus across features, is NOT pad invariant). ``align.check_metric`` verifies it.
      defaults: keyword defaults; values that change the compiled program are listed in ``static``.
      static: names of keyword arguments that are static (shapes, kinds, counts); others are traced.
      prepare_kwargs: names of keyword arguments routed to ``prepare`` (the rest go to ``compare``).
      validate: optional ``validate(n, widths, **kwargs)`` raising ValueError for bad hyper-parameters.
      grid_chunk: layer pairs the engine evaluates at once by default (vmapped); None = one whole row of the grid.
        Heavy compares (ridge: alphas x folds of [n, r] x [r, q] matmuls) run faster one pair at a time on CPU,
        where XLA's batched matmuls leave the fast GEMM path.
      prepare_target: optional cheaper ``prepare`` for an asymmetric metric: the part of the prepared form that
        ``compare`` reads from its second argument (the target). The engine uses it where a layer only ever enters
        as a target, as in permutation nulls, which permute the target's rows (linear predictivity: the target's
        data and per-fold means, without the per-fold SVDs).
      fold_pca_kwarg: the keyword through which this metric fits PCA on its own training folds (linear
        predictivity: ``"pca_components"``), or None. With ``preprocess="pca(k)"`` the engine passes ``k`` through it
        instead of transforming the data, so components are never fitted on held-out rows.
      check_outputs: optional ``check_outputs(aux, layers_x, layers_y, kwargs)`` called after a grid with the
        auxiliary per-pair outputs of ``compare`` (``{name: {direction: [Lx, Ly]}}``, e.g. linear predictivity's
        chosen penalties), the layer names and the metric's keyword arguments; it may warn about them (linear predictivity: :class:`AlphaGridWarning`).
      paired_statistic: how experiments test a difference of this metric between two conditions on the same
        stimuli. None (default): ``align.engine.paired_difference``, which recomputes the metric under every condition
        swap and resample. ``"heldout_ridge"``: draws over the metric's held-out ridge predictions, fitted once per
        condition (linear predictivity, whose refit per draw would cost a cross-validated ridge fit each;
        ``align.experiments.heldout_paired_difference``).
      reference: the paper or implementation the definition follows.
      doc: one line on what it measures.
    """

    name: str
    compare: Callable[..., Any]
    prepare: Callable[..., Any] | None = None
    symmetric: bool = True
    higher_is_more_aligned: bool = True
    bounds: tuple[float, float] | None = None
    invariances: frozenset[str] = frozenset()
    not_invariant_to: str | None = None
    min_n: int = 3
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    static: frozenset[str] = frozenset()
    prepare_kwargs: frozenset[str] = frozenset()
    validate: Callable[..., None] | None = None
    reference: str = ""
    doc: str = ""
    pad_invariant: bool = False
    grid_chunk: int | None = None
    prepare_target: Callable[..., Any] | None = None
    fold_pca_kwarg: str | None = None
    check_outputs: Callable[..., None] | None = None
    paired_statistic: str | None = None

    def __post_init__(self):
        unknown = set(self.invariances) - INVARIANCES
        if unknown:
            raise ValueError(f"metric {self.name!r}: unknown invariances {sorted(unknown)}; known: {sorted(INVARIANCES)}")
        if self.paired_statistic not in PAIRED_STATISTICS:
            raise ValueError(f"metric {self.name!r}: paired_statistic={self.paired_statistic!r}; known: "
                             f"{list(PAIRED_STATISTICS)}")

    def split_kwargs(self, kwargs: Mapping[str, Any]) -> tuple[dict, dict]:
        """Merge ``kwargs`` over the defaults and split them into (prepare kwargs, compare kwargs)."""
        unknown = set(kwargs) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"metric {self.name!r} got unknown argument(s) {sorted(unknown)}; it accepts {sorted(self.defaults)}"
            )
        merged = {**self.defaults, **kwargs}
        prep = {k: v for k, v in merged.items() if k in self.prepare_kwargs}
        comp = {k: v for k, v in merged.items() if k not in self.prepare_kwargs}
        return prep, comp


_REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric | None = None, /, *, overwrite: bool = False, **fields) -> Metric | Callable:
    """Register a metric (built-in or custom probe) under ``metric.name``.

    Use either ``register_metric(Metric(...))`` or, for a plain function of ``(X, Y)``, as a decorator::

        @align.register_metric(name="my_probe", symmetric=True, bounds=(0, 1))
        def my_probe(X, Y): ...
    """
    if metric is None:
        def decorator(fn):
            name = fields.pop("name", fn.__name__)
            register_metric(Metric(name=name, compare=fn, doc=fields.pop("doc", (fn.__doc__ or "").strip().split("\n")[0]), **fields), overwrite=overwrite)
            return fn
        return decorator
    if not isinstance(metric, Metric):
        raise TypeError(f"register_metric expects a Metric, got {type(metric).__name__}")
    if metric.name in _REGISTRY and not overwrite:
        raise ValueError(f"a metric named {metric.name!r} is already registered; pass overwrite=True to replace it")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", metric.name):
        raise ValueError(f"metric name {metric.name!r} must be a Python identifier")
    _REGISTRY[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """The registered metric called ``name`` (raises a ValueError listing the known names)."""
    if isinstance(name, Metric):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; registered metrics: {', '.join(sorted(_REGISTRY))}") from None


def list_metrics() -> list[str]:
    """Names of every registered metric, sorted."""
    return sorted(_REGISTRY)


def parse_metric_spec(spec: str) -> tuple[Metric, dict[str, Any]]:
    """Parse a string spec such as ``"rbf_cka(sigma_frac=0.5)"`` into (metric, kwargs).

    Arguments must be keyword literals (numbers, strings, booleans, None, tuples/lists of those).
    """
    spec = spec.strip()
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?", spec, flags=re.S)
    if not m:
        raise ValueError(f"cannot parse metric spec {spec!r}; expected NAME or NAME(key=value, ...)")
    metric = get_metric(m.group(1))
    kwargs: dict[str, Any] = {}
    if m.group(2) and m.group(2).strip():
        try:
            call = ast.parse(f"f({m.group(2)})", mode="eval").body
        except SyntaxError as e:
            raise ValueError(f"cannot parse arguments of metric spec {spec!r}: {e.msg}") from None
        if call.args:
            raise ValueError(f"metric spec {spec!r}: arguments must be given by keyword (key=value)")
        for kw in call.keywords:
            try:
                kwargs[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                raise ValueError(f"metric spec {spec!r}: value of {kw.arg!r} must be a literal") from None
        metric.split_kwargs(kwargs)  # validates the names
    return metric, kwargs
