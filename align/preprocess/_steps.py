"""Per-layer feature preprocessing, applied before any metric: parsing string specs and applying them.

A step is a pure, deterministic, label-free function of ONE layer ``X`` ``[n, d]`` (rows = stimuli, columns =
features); it never looks at another layer or at the other model. Output is float32; means, standard deviations,
norms and the SVD are computed in float64.

Options (string specs, as in configs; the canonical form of each is what results tables record):

- ``none``: the activations as stored.
- ``center``: subtract the column (feature) means.
- ``zscore``: subtract the column means and divide by the column standard deviations (``ddof=0``, as sklearn's
  ``StandardScaler``); a constant column becomes 0 (not NaN).
- ``clip(q=0.95)`` (also ``clip(0.95)``): clamp every value to ``[-t, t]``, ``t`` the ``q``-quantile of ``|x|``
  over the whole layer (all stimuli and features). ``t`` is the order statistic ``sort(|x|.ravel())[floor(q * N)]``
  (``N = n * d``), which is platonic-rep's ``remove_outliers(feats, q, exact=True)`` (Huh et al. 2024,
  ``metrics.py``: ``feats.view(-1).abs().sort().values[int(q * feats.numel())]``, then ``feats.clamp(-t, t)``).
  Two differences, on purpose: platonic-rep calls it on the ``[n, L, d]`` tensor of ALL layers of a model at
  once (one threshold per model) and, by default (``precise=False``), uses the mean over stimuli of per-stimulus
  linearly interpolated quantiles instead; here ``t`` is per layer, so a layer's result does not depend on the
  other layers. (platonic-rep then L2-normalises the rows: that is the separate ``l2`` option here; mutual_knn
  and cknna normalise rows themselves.)
- ``l2``: each row (stimulus) divided by its Euclidean norm; an all-zero row stays 0.
- ``pca(k)`` (also ``pca(k=50)``): the layer's scores on its top-k principal components, ``[n, k]`` (columns
  centered; ``U[:, :k] * S[:k]`` of the centered layer's exact SVD, signs fixed so that the largest-magnitude
  loading of each component is positive, as sklearn's ``svd_flip``). Needs ``1 <= k <= min(n, d)``.

Where the step is fitted: ``center``, ``zscore``, ``clip`` and ``pca`` estimate their statistics (means, stds,
the threshold, the components) from ALL rows of the layer. For metrics without held-out rows (CKA, RSA, kNN, ...)
that is the natural choice. It is also why permutation nulls and bootstraps re-use the preprocessed arrays: the
step is label-free (it never sees the pairing), so shuffling the pairing after it is exact; a bootstrap resample
then sees statistics fitted on the full sample (a small, conservative-in-spread choice, documented here). A metric
that holds rows out (linear predictivity's cross-validation folds) must not see components fitted on its held-out
rows: with ``pca(k)`` the engine hands ``k`` to such a metric through its ``Metric.fold_pca_kwarg`` keyword, and the
metric fits PCA on each training fold; the data are not transformed. ``center``/``zscore``/``clip`` use all rows
even then (per-column means and scales, or one scalar threshold, leak far less than components; linear
predictivity re-centers with training-fold means anyway).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np

#: The preprocessing every entry point uses when none is given (``align.pairwise``, ``[score] preprocess``).
DEFAULT_PREPROCESS = "none"

#: Option names, in the order the README lists them.
PREPROCESS_OPTIONS = ("none", "center", "zscore", "clip", "l2", "pca")

#: The one parameter of each parameterised option: (name, default or None when required).
_PARAMS = {"clip": ("q", 0.95), "pca": ("k", None)}


class PreprocessError(ValueError):
    """A preprocessing spec that cannot be parsed, or that does not fit a layer (names the option and the layer)."""


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """One parsed preprocessing step.

    Attributes:
      name: one of ``PREPROCESS_OPTIONS``.
      q: the quantile of ``clip`` (in (0, 1)); None otherwise.
      k: the component count of ``pca`` (>= 1); None otherwise.
    """

    name: str
    q: float | None = None
    k: int | None = None

    @property
    def spec(self) -> str:
        """The canonical spec string, e.g. ``"clip(q=0.95)"``, ``"pca(k=50)"``, ``"zscore"``."""
        if self.name == "clip":
            return f"clip(q={self.q!r})"
        if self.name == "pca":
            return f"pca(k={self.k})"
        return self.name

    def __str__(self) -> str:
        return self.spec

    def check(self, n: int, d: int, layer: str = "the layer") -> None:
        """Raise PreprocessError when the step does not fit a ``[n, d]`` layer (``pca(k)`` with k > min(n, d))."""
        if self.name == "pca" and self.k > min(n, d):
            raise PreprocessError(
                f"preprocess {self.spec!r}: k = {self.k} exceeds min(n, d) = {min(n, d)} of {layer} ({n} stimuli x "
                f"{d} features), so there are not {self.k} principal components; use pca(k) with k <= {min(n, d)}")

    def apply(self, X, layer: str = "the layer") -> np.ndarray:
        """The preprocessed layer.

        Args:
          X: ``[n, d]`` activations of one layer (rows = stimuli).
          layer: how to name the layer in errors.

        Returns:
          ``[n, d]`` float32 (``[n, k]`` for ``pca(k)``). ``none`` returns ``X`` itself when it is already float32.
        """
        X = np.asarray(X)
        if X.ndim != 2:
            raise PreprocessError(f"preprocess {self.spec!r}: {layer} must be a [n, d] array, got shape {X.shape}")
        self.check(*X.shape, layer=layer)
        if self.name == "none":
            return X if X.dtype == np.float32 else X.astype(np.float32)
        if self.name == "clip":
            return _clip(X, self.q)
        x = X.astype(np.float64)
        if self.name == "l2":
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32)
        x -= x.mean(axis=0)
        if self.name == "center":
            return x.astype(np.float32)
        if self.name == "zscore":
            std = x.std(axis=0)
            return np.divide(x, std, out=np.zeros_like(x), where=std > 0).astype(np.float32)
        return _pca_scores(x, self.k)


def _clip(X: np.ndarray, q: float) -> np.ndarray:
    a = np.abs(X.astype(np.float32, copy=False)).ravel()
    i = min(int(q * a.size), a.size - 1)
    t = np.partition(a, i)[i]
    return np.clip(X, -t, t).astype(np.float32)


def _pca_scores(xc: np.ndarray, k: int) -> np.ndarray:
    """``[n, k]`` scores of centered float64 ``xc`` on its top-k principal components (deterministic signs)."""
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    u, s, vt = u[:, :k], s[:k], vt[:k]
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    return (u * (s * signs)).astype(np.float32)


_SPEC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?", flags=re.S)


def parse_preprocess(spec: str | Preprocess | None) -> Preprocess:
    """Parse a preprocessing spec: ``"none"``, ``"center"``, ``"zscore"``, ``"clip(q=0.95)"`` / ``"clip(0.95)"``
    / ``"clip"`` (q = 0.95), ``"l2"``, ``"pca(k=50)"`` / ``"pca(50)"``.

    Args:
      spec: the string, a :class:`Preprocess` (returned as is), or None for ``DEFAULT_PREPROCESS``.

    Returns:
      The :class:`Preprocess`; its ``.spec`` is the canonical string.

    Raises:
      PreprocessError: unknown option, malformed arguments, q outside (0, 1), k < 1 or not an integer.
    """
    if spec is None:
        spec = DEFAULT_PREPROCESS
    if isinstance(spec, Preprocess):
        return spec
    if not isinstance(spec, str):
        raise PreprocessError(f"preprocess must be a string such as 'zscore' or 'clip(q=0.95)', got "
                              f"{type(spec).__name__} {spec!r}")
    m = _SPEC.fullmatch(spec.strip())
    if m is None:
        raise PreprocessError(f"cannot parse preprocess {spec!r}; write an option name, e.g. 'zscore', or "
                              "NAME(VALUE), e.g. 'clip(q=0.95)' or 'pca(k=50)'")
    name = m.group(1).lower()
    if name not in PREPROCESS_OPTIONS:
        raise PreprocessError(f"unknown preprocess option {spec!r}; options: none, center, zscore, clip(q=0.95), l2, "
                              "pca(k)")
    args = (m.group(2) or "").strip()
    if name not in _PARAMS:
        if args:
            raise PreprocessError(f"preprocess {spec!r}: {name!r} takes no arguments")
        return Preprocess(name)
    key, default = _PARAMS[name]
    value = default
    if args:
        try:
            call = ast.parse(f"f({args})", mode="eval").body
            given = [ast.literal_eval(a) for a in call.args] + [ast.literal_eval(kw.value) for kw in call.keywords]
        except (SyntaxError, ValueError):
            raise PreprocessError(f"cannot parse preprocess {spec!r}; write {name}({key}=VALUE)") from None
        names = [kw.arg for kw in call.keywords]
        if len(given) != 1 or names not in ([], [key]):
            raise PreprocessError(f"preprocess {spec!r}: {name} takes one argument, {key} (e.g. {name}({key}=...))")
        value = given[0]
    if value is None:
        raise PreprocessError(f"preprocess {spec!r}: {name} needs {key}, e.g. {name}({key}=50)")
    if name == "clip":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
            raise PreprocessError(f"preprocess {spec!r}: q = {value!r} must be a number in (0, 1) (the quantile of "
                                  "|x| to clamp at, e.g. 0.95)")
        return Preprocess("clip", q=float(value))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PreprocessError(f"preprocess {spec!r}: k = {value!r} must be an integer >= 1 (principal components)")
    return Preprocess("pca", k=int(value))


def preprocess_layer(X, spec: str | Preprocess | None = None, *, layer: str = "the layer") -> np.ndarray:
    """One ``[n, d]`` layer preprocessed by ``spec`` (see the module docstring); float32 ``[n, d]`` (``[n, k]``
    for ``pca(k)``). ``layer`` names the layer in errors."""
    return parse_preprocess(spec).apply(X, layer=layer)


def preprocess_layers(layers, spec: str | Preprocess | None = None, *, label: str = "layers"):
    """Every layer of one model preprocessed by ``spec``, each on its own.

    Args:
      layers: a mapping layer name -> ``[n, d_l]`` array (e.g. an ``ActivationStore``) or a sequence of arrays.
      spec: the preprocessing spec.
      label: how to name the model in errors (e.g. ``"Xs"``).

    Returns:
      A dict name -> float32 array for a mapping, else a list, in the input's order.
    """
    step = parse_preprocess(spec)
    if isinstance(layers, Mapping):
        return {k: step.apply(layers[k], layer=f"layer {k!r} of {label}") for k in layers}
    if isinstance(layers, np.ndarray) and layers.ndim == 2:
        layers = [layers]
    if not isinstance(layers, Sequence) and not hasattr(layers, "__iter__"):
        raise TypeError(f"{label}: expected a mapping or sequence of [n, d] arrays, got {type(layers).__name__}")
    return [step.apply(a, layer=f"layer {i} of {label}") for i, a in enumerate(layers)]
