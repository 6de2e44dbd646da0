"""Foundation: console script, light import, config show."""

import subprocess
import sys

from jobs.cli import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_every_subcommand_has_a_job_module():
    import importlib.util

    for name in COMMANDS:
        module = f"jobs.{name}"
        assert importlib.util.find_spec(module) is not None, f"{name}: {module} missing"


def test_import_textboost_is_light():
    code = "import sys, textboost; print('ray' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_config_show_prints_resolved_values(capsys):
    assert main(["config", "show", "configs/quickstart.yaml", "train.lr=0.5"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out
    assert "config hash:" in out
    assert "${" not in out  # interpolations resolved


def test_config_show_unknown_key_fails_with_dotted_path(capsys):
    assert main(["config", "show", "configs/quickstart.yaml", "train.nope=1"]) == 1
    err = capsys.readouterr().err
    assert "train.nope" in err and "batch_size" in err
