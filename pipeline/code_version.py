"""The shard manifests' ``code_version``: a digest of the source of the code that makes the bytes.

Not a hand-kept list: a clean interpreter imports the entry modules of the shard build
(``ENTRY_MODULES``: the shard task and the shard order), then, until nothing new turns up,
every module of ``PACKAGES`` that an ``import`` statement of a loaded module names, also inside
functions (the sample code imports the OCR engine, the renderer and the synthesiser lazily).
The digest covers the relative path and bytes of every such module file under the repository
root, in sorted order: the same on every machine and for any worker count (no absolute
paths, no bytecode). Editing a file the shard build never imports leaves it unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ENTRY_MODULES = ("pipeline.shard_task", "pipeline.shard_order")
PACKAGES = ("textboost", "pipeline")
ROOT = Path(__file__).resolve().parent.parent  # the repository (parent of pipeline/)

# Runs in ``python -I``: argv = root, packages (comma-separated), entry modules (same); prints
# the JSON list of the files of every loaded module of the packages.
PROBE = r"""
import ast, importlib, json, sys
root, packages, todo = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
sys.path.insert(0, root)

def named(module):
    tree = ast.parse(open(module.__file__, "rb").read())
    base = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = base.rsplit(".", node.level - 1)[0] if node.level else ""
            name = ".".join(p for p in (parent, node.module or "") if p)
            yield name
            yield from (f"{name}.{a.name}" for a in node.names)

def ours():
    return {n: m for n, m in sys.modules.items()
            if n.split(".")[0] in packages and getattr(m, "__file__", None)}

tried, scanned = set(), set()
while todo:
    for name in todo:
        tried.add(name)
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a module that exists but cannot import its own imports
                raise
    new = {n: m for n, m in ours().items() if n not in scanned}
    scanned.update(new)
    todo = sorted({n for m in new.values() for n in named(m)
                   if n.split(".")[0] in packages and n not in tried and n not in sys.modules})
print(json.dumps(sorted(m.__file__ for m in ours().values())))
"""


def module_files(root: Path, entries: tuple[str, ...], packages: tuple[str, ...]) -> list[str]:
    """Relative POSIX paths, sorted, of the ``packages`` modules under ``root`` that importing
    ``entries`` loads (with the lazily imported ones, see the module docstring)."""
    argv = [sys.executable, "-I", "-c", PROBE, str(root), ",".join(packages), ",".join(entries)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=root, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"code_version: importing {entries} failed:\n{done.stderr[-2000:]}")
    root = root.resolve()
    rel = []
    for file in json.loads(done.stdout):
        path = Path(file).resolve()
        if path.is_relative_to(root) and path.relative_to(root).parts[0] in packages:
            rel.append(path.relative_to(root).as_posix())
    return sorted(rel)


def source_digest(root: Path, entries: tuple[str, ...], packages: tuple[str, ...]) -> str:
    """sha256 over the relative path and bytes of each module file (``module_files``)."""
    h = hashlib.sha256()
    for rel in module_files(root, entries, packages):
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()


@functools.cache
def code_version() -> str:
    """Package version plus a digest of the code that produces shard bytes (once a process)."""
    import textboost

    return f"{textboost.__version__}+{source_digest(ROOT, ENTRY_MODULES, PACKAGES)[:12]}"
