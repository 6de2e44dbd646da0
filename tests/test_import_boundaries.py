"""Import boundaries between the three packages (docs/architecture.md "Packages").

``textboost`` is the method: importing any of its modules never loads Ray, MLflow or
``pipeline``. ``pipeline`` orchestrates with Ray and MLflow and never loads ``jobs`` (argument
parsing). Each package is walked in a fresh interpreter, importing its modules one by one, so
the report names the first module that pulls a forbidden package in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib, json, pkgutil, sys
package, banned = sys.argv[1], set(sys.argv[2].split(","))
loaded = lambda: sorted({m.split(".")[0] for m in sys.modules} & banned)
found = {}
root = importlib.import_module(package)
if loaded():
    found[package] = loaded()
for info in pkgutil.walk_packages(root.__path__, package + "."):
    before = set(loaded())
    importlib.import_module(info.name)
    new = sorted(set(loaded()) - before)
    if new:
        found[info.name] = new
print(json.dumps(found))
"""


def forbidden_imports(package: str, banned: tuple[str, ...], root: Path = ROOT) -> dict:
    """``{module: [forbidden top-level packages it loaded]}`` over every module of ``package``
    (imported in a clean interpreter with ``root`` first on the path)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, package, ",".join(banned)],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("package", "banned"),
    [("textboost", ("ray", "mlflow", "pipeline", "jobs")), ("pipeline", ("jobs",))],
)
def test_package_never_imports_upper_layers(package, banned):
    assert forbidden_imports(package, banned) == {}


def test_the_console_script_lives_in_jobs():
    """``textboost`` dispatches to the ``jobs.<command>`` modules, so it is a ``jobs`` module
    (``jobs.cli``): the method package names no ``jobs`` module, not even as a string for
    ``importlib``."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^textboost = "jobs\.cli:main"$', pyproject, re.M)
    for path in sorted((ROOT / "textboost").rglob("*.py")):
        assert not re.search(r"[\"']jobs\.", path.read_text()), path


def test_probe_names_the_module_that_crosses_a_boundary(tmp_path):
    """The check itself: a module that imports a forbidden package is reported."""
    pkg = tmp_path / "lower"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "clean.py").write_text("import json\n")
    (pkg / "leaky.py").write_text("import upper.cmd\n")
    (tmp_path / "upper").mkdir()
    (tmp_path / "upper" / "__init__.py").write_text("")
    (tmp_path / "upper" / "cmd.py").write_text("")
    assert forbidden_imports("lower", ("upper",), tmp_path) == {"lower.leaky": ["upper"]}
