"""``textboost config show CONFIG [key=value ...]``: print the resolved, validated config."""

from __future__ import annotations

import argparse

from jobs.common import add_config_args, config_from_args
from textboost.config import config_hash, to_yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="textboost config")
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="print the resolved config")
    add_config_args(show)
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    print(to_yaml(cfg), end="")
    print(f"# config hash: {config_hash(cfg)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
