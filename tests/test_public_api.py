"""The curated public surface: re-exported one name per line, every public function and class documented;
`import align` stays light (no torch)."""

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ["align", "align.data", "align.store", "align.extract", "align.metrics", "align.engine",
            "align.experiments", "align.results", "align.plots", "align.report", "align.stats",
            "align.streaming"]


def _reexports(module) -> list[ast.ImportFrom]:
    source = Path(module.__file__).read_text()
    return [node for node in ast.parse(source).body if isinstance(node, ast.ImportFrom)
            and not node.module.startswith("__future__")]


@pytest.mark.parametrize("package", PACKAGES)
def test_reexports_are_one_name_per_line_and_documented(package):
    module = importlib.import_module(package)
    nodes = _reexports(module)
    assert nodes, f"{package} re-exports nothing"
    several = [f"line {n.lineno}: {', '.join(a.name for a in n.names)}" for n in nodes if len(n.names) > 1]
    assert not several, f"{package}: one name per import line: {several}"
    undocumented = []
    for node in nodes:
        name = node.names[0].asname or node.names[0].name
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
            undocumented.append(name)
    assert not undocumented, f"{package}: public names without a docstring: {undocumented}"


def test_import_align_does_not_import_torch():
    code = "import sys, align, align.extract, align.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
