"""Every public name of every package imports; `import align` stays light (no torch)."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ["align", "align.data", "align.store", "align.extract", "align.metrics", "align.engine",
            "align.experiments", "align.results", "align.plots"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_reexported_name_resolves(package):
    module = importlib.import_module(package)
    source = Path(module.__file__).read_text()
    names = [alias.asname or alias.name for node in ast.parse(source).body if isinstance(node, ast.ImportFrom)
             for alias in node.names if not alias.name.startswith("_") and alias.name != "*"]
    assert names, f"{package} re-exports nothing"
    for name in names:
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_import_align_does_not_import_torch():
    code = "import sys, align, align.extract, align.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
