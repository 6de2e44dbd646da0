"""``code_version``: computed from the modules the shard build imports, not from a list."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.code_version import (
    ENTRY_MODULES,
    PACKAGES,
    ROOT,
    code_version,
    module_files,
    source_digest,
)

TOY = ("toypkg",)


def _toy(root: Path) -> Path:
    pkg = root / "toypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "entry.py").write_text("from toypkg.helper import f\n\n\ndef g():\n    return f()\n")
    (pkg / "helper.py").write_text("def f():\n    return 1\n")
    (pkg / "unrelated.py").write_text("X = 1\n")
    (pkg / "extra.py").write_text("Y = 2\n")
    return pkg


def test_imported_modules_count_and_unimported_files_do_not(tmp_path: Path) -> None:
    pkg = _toy(tmp_path)
    files = module_files(tmp_path, ("toypkg.entry",), TOY)
    assert files == ["toypkg/__init__.py", "toypkg/entry.py", "toypkg/helper.py"]
    before = source_digest(tmp_path, ("toypkg.entry",), TOY)
    (pkg / "unrelated.py").write_text("X = 2  # edited, never imported\n")
    assert source_digest(tmp_path, ("toypkg.entry",), TOY) == before
    (pkg / "helper.py").write_text("def f():\n    return 2\n")
    changed = source_digest(tmp_path, ("toypkg.entry",), TOY)
    assert changed != before
    # a new import, even one inside a function (imported lazily), joins the digest
    (pkg / "entry.py").write_text(
        "from toypkg.helper import f\n\n\ndef g():\n    from toypkg import extra\n\n"
        "    return f() + extra.Y\n"
    )
    assert "toypkg/extra.py" in module_files(tmp_path, ("toypkg.entry",), TOY)
    assert source_digest(tmp_path, ("toypkg.entry",), TOY) != changed


def _copy_of_the_repository(dest: Path) -> Path:
    skip = shutil.ignore_patterns("__pycache__", "*.pt", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=skip)
    return dest


def test_the_real_code_version_follows_what_the_sample_code_imports(tmp_path: Path) -> None:
    files = module_files(ROOT, ENTRY_MODULES, PACKAGES)
    for module in ("pipeline/samples.py", "pipeline/shard_task.py", "pipeline/tarwriter.py",
                   "textboost/text/guidance.py", "textboost/text/side_info.py", "textboost/data/synth.py",
                   "textboost/text/ocr.py", "textboost/text/filtering.py", "textboost/text/geometry.py"):  # fmt: skip
        assert module in files, module  # lazily imported ones included
    assert not [f for f in files if f.startswith("textboost/model/")]  # no network code
    assert not [f for f in files if f.startswith(("pipeline/training", "pipeline/train_"))]
    assert code_version().endswith("+" + source_digest(ROOT, ENTRY_MODULES, PACKAGES)[:12])

    copy = _copy_of_the_repository(tmp_path / "elsewhere")
    digest = source_digest(copy, ENTRY_MODULES, PACKAGES)
    assert digest == source_digest(ROOT, ENTRY_MODULES, PACKAGES)  # relative paths only
    with open(
        copy / "textboost" / "model" / "textboost.py", "a"
    ) as f:  # the shard build never imports it
        f.write("\n# edited\n")
    assert source_digest(copy, ENTRY_MODULES, PACKAGES) == digest
    with open(copy / "textboost" / "text" / "geometry.py", "a") as f:  # imported by the renderer
        f.write("\n# edited\n")
    assert source_digest(copy, ENTRY_MODULES, PACKAGES) != digest
