"""Import boundaries between the three packages (docs/architecture.md "Packages").

``textboost`` is the method: importing any of its modules never loads Ray, MLflow or
``pipeline``. ``pipeline`` orchestrates with Ray and MLflow and never loads ``jobs`` (argument
parsing). Each package is walked in a fresh interpreter, importing its modules one by one, so
the report names the first module that pulls a forbidden package in.
"""

from __future__ import annotations

import ast
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


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Write ``{relative path: text}`` under ``root`` (a throwaway package for the checks)."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_probe_names_the_module_that_crosses_a_boundary(tmp_path):
    """The check itself: a module that imports a forbidden package is reported."""
    write_tree(tmp_path, {
        "lower/__init__.py": "", "lower/clean.py": "import json\n",
        "lower/leaky.py": "import upper.cmd\n", "upper/__init__.py": "", "upper/cmd.py": "",
    })  # fmt: skip
    assert forbidden_imports("lower", ("upper",), tmp_path) == {"lower.leaky": ["upper"]}


def top_level_imports(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """``{module: modules of packages it imports when it is imported}``: the ``import``
    statements of each module's body (also inside top-level ``if``/``try``; not inside
    functions or ``if TYPE_CHECKING:``), resolved to the modules of ``packages`` under ``root``."""
    files = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def statements(body):
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from statements(node.orelse)
                continue
            yield node
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from statements(getattr(node, field, []))

    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in statements(ast.parse(path.read_text()).body):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                for a in node.names:
                    targets.add(f"{module}.{a.name}" if f"{module}.{a.name}" in files else module)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``[]``."""
    done, stack = set(), []

    def visit(node):
        if node in stack:
            return stack[stack.index(node) :] + [node]
        if node in done:
            return []
        stack.append(node)
        for nxt in sorted(graph[node]):
            if cycle := visit(nxt):
                return cycle
        stack.pop()
        done.add(node)
        return []

    for node in sorted(graph):
        if cycle := visit(node):
            return cycle
    return []


def test_no_import_cycle_between_modules():
    """Each module can be imported on its own: no cycle through top-level imports (a lazy
    import inside a function does not count) among the modules of ``textboost`` and
    ``pipeline``."""
    graph = top_level_imports(ROOT, ("textboost", "pipeline"))
    assert "textboost.model.textboost" in graph["textboost.model"]
    assert "textboost.text.words" in graph["textboost.text.filtering"]
    assert import_cycle(graph) == []


def test_cycle_check_finds_a_cycle(tmp_path):
    pkg = tmp_path / "loop"
    write_tree(tmp_path, {
        "loop/__init__.py": "", "loop/a.py": "from loop import b\n",
        "loop/b.py": "import json\n\nfrom loop.c import f\n",
        "loop/c.py": "def f():\n    from loop import a\n",  # lazy: no cycle
    })  # fmt: skip
    assert import_cycle(top_level_imports(tmp_path, ("loop",))) == []
    (pkg / "c.py").write_text("from .a import x\n")
    assert import_cycle(top_level_imports(tmp_path, ("loop",))) == [
        "loop.a",
        "loop.b",
        "loop.c",
        "loop.a",
    ]
