"""``textboost`` console script (``python -m jobs.cli``): one subcommand per job in ``jobs/``.

Each subcommand forwards its arguments to ``jobs.<module>.main(argv)``; modules are imported
only when their subcommand runs, so ``textboost --help`` stays fast. Before a subcommand runs,
MLflow's HTTP client gets bounded waits (``pipeline.tracking.NETWORK_DEFAULTS``).

This is the one error boundary of the command line: every expected failure (bad input files,
configs, I/O, unreachable services) ends in one or two lines on stderr naming the thing and
what to do, with a non-zero exit status. ``--debug`` (anywhere on the command line, or
``TEXTBOOST_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from textboost.errors import TextBoostError

# command -> its one-line help; the command runs jobs.<command>.main
COMMANDS: dict[str, str] = {
    "config": "print the resolved config (config show CONFIG [key=value ...])",
    "synth": "generate the synthetic scene-text set (TextOCR / ICDAR 2015 format)",
    "render": "render the guidance map of an image's OCR words",
    "compress": "encode an image into a .tbx container",
    "decompress": "decode a .tbx container into an image",
    "shards": "build, verify or rebuild WebDataset shards with Ray",
    "train": "Ray Train DDP, stage 1 or stage 2",
    "evaluate": "bitstreams, image metrics, text-spotting F1, baselines",
    "registry": "list or promote registered models (MLflow)",
    "pipeline": "end to end: data, shards, stage 1, stage 2, evaluate, register",
    "lineage": "registered model -> run -> config -> shards (and --rebuild)",
    "zoo": "models shipped in the package: list, show, export (zoo:NAME)",
}

DEBUG_FLAG = "--debug"
DEBUG_ENV = "TEXTBOOST_DEBUG"
# Exceptions of these packages are network or service failures (the message names the URL).
_SERVICE_MODULES = ("requests", "urllib3", "botocore", "aiobotocore", "aiohttp", "mlflow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textboost",
        description="TextBoost: OCR-guided learned image compression pipeline.",
        epilog=f"{DEBUG_FLAG} (anywhere): show the traceback of a failure instead of one line",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(lines) <= 1 else f"{text} (...)"


def describe_failure(exc: BaseException) -> tuple[str, int]:
    """``(message, exit status)`` of an exception that reached the command line."""
    if isinstance(exc, TextBoostError):
        return str(exc), 1
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, MemoryError):
        return "out of memory: use a smaller input or a machine with more memory", 1
    if isinstance(exc, OSError):
        what = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{what}{exc.strerror or _one_line(exc)} (check the path and permissions)", 1
    module = type(exc).__module__.split(".", 1)[0]
    if module in _SERVICE_MODULES:
        return (
            f"{type(exc).__name__}: {_one_line(exc)} (check the URI, that the service runs "
            "and answers, and the credentials)",
            1,
        )
    return (
        f"unexpected {type(exc).__name__}: {_one_line(exc)} (rerun with {DEBUG_FLAG} for the "
        "traceback and report it)",
        1,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != DEBUG_FLAG]
    if debug:
        os.environ[DEBUG_ENV] = "1"  # child processes (decompress) show tracebacks too
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])  # prints help / usage error and exits
        return 2
    try:
        from pipeline.tracking import apply_network_defaults

        apply_network_defaults()
        module = importlib.import_module(f"jobs.{argv[0]}")
        return int(module.main(argv[1:]) or 0)
    except SystemExit:
        raise
    except BaseException as exc:
        if debug:
            raise
        message, status = describe_failure(exc)
        print(f"textboost {argv[0]}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
