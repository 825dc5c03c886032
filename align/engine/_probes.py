"""Custom probes: Python files (or modules) that register metrics, loaded by path so configs can list them."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_LOADED: dict[str, ModuleType] = {}


def load_probe(path_or_module: str | Path) -> ModuleType:
    """Import a probe so that the metrics it registers become available by name (in ``pairwise``, configs, CLI).

    Args:
      path_or_module: a ``.py`` file (e.g. ``"probes/cosine_centroid.py"``; imported with
        ``importlib.util.spec_from_file_location``) or an importable module name (``"mypkg.my_probe"``).

    Returns:
      The imported module. Loading the same file or module again returns it without re-running it (so its
      ``register_metric`` calls do not collide).

    Raises:
      FileNotFoundError: a path that does not exist.
      ImportError: a module name that cannot be imported.
    """
    text = str(path_or_module)
    looks_like_path = isinstance(path_or_module, Path) or text.endswith(".py") or "/" in text or "\\" in text
    if not looks_like_path:
        if text in _LOADED:
            return _LOADED[text]
        module = importlib.import_module(text)
        _LOADED[text] = module
        return module
    path = Path(text).expanduser().resolve()
    key = str(path)
    if key in _LOADED:
        return _LOADED[key]
    if not path.is_file():
        raise FileNotFoundError(f"probe file {text!r} does not exist (resolved to {path}); give a path to a .py file "
                                "that calls align.register_metric")
    name = f"align_probe_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import probe file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _LOADED[key] = module
    return module
