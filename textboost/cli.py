"""``textboost`` console script: one subcommand per job in ``jobs/``.

Each subcommand forwards its arguments to ``jobs.<module>.main(argv)``; modules are imported
only when their subcommand runs, so ``textboost --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from textboost.errors import TextBoostError

COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("jobs.config", "print the resolved config (config show CONFIG [key=value ...])"),
    "synth": ("jobs.synth", "generate the synthetic scene-text set (TextOCR / ICDAR 2015 format)"),
    "render": ("jobs.render", "render the guidance map of an image's OCR words"),
    "compress": ("jobs.compress", "encode an image into a .tbx container"),
    "decompress": ("jobs.decompress", "decode a .tbx container into an image"),
    "shards": ("jobs.shards", "build, verify or rebuild WebDataset shards with Ray"),
    "train": ("jobs.train", "Ray Train DDP, stage 1 or stage 2"),
    "evaluate": ("jobs.evaluate", "bitstreams, image metrics, text-spotting F1, baselines"),
    "registry": ("jobs.registry", "list or promote registered models (MLflow)"),
    "pipeline": ("jobs.pipeline", "end to end: data, shards, stage 1, stage 2, evaluate, register"),
    "lineage": ("jobs.lineage", "registered model -> run -> config -> shards (and --rebuild)"),
    "zoo": ("jobs.zoo", "models shipped in the package: list, show, export (zoo:NAME)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textboost",
        description="TextBoost: OCR-guided learned image compression pipeline.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])  # prints help / usage error and exits
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        return int(module.main(argv[1:]) or 0)
    except TextBoostError as exc:
        print(f"textboost {argv[0]}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
