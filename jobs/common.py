"""Small helpers shared by entry points."""

from __future__ import annotations

import argparse

from textboost.config import TextBoostConfig, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.stage=2")


def config_from_args(args: argparse.Namespace) -> TextBoostConfig:
    return load_config(args.config, args.overrides)
