"""``textboost shards build|verify|rebuild``: WebDataset shards with Ray (docs/architecture.md).

    textboost shards build CONFIG [key=value ...] [--split train|val|all]
    textboost shards verify DIR
    textboost shards rebuild DIR --check [--split S] [--shard N ...] [key=value ...]

``build`` resumes: committed shards with the same config hash are skipped. ``verify``
recomputes hashes and counts; ``rebuild --check`` regenerates shards from the manifest's
stored config and compares bytes. Both exit non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.common import add_config_args, config_from_args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textboost shards")
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="build (or resume) the shards of data.train / data.val")
    add_config_args(build)
    build.add_argument("--split", choices=["train", "val", "all"], default="all")
    verify = sub.add_parser("verify", help="recompute hashes and counts of a shard folder")
    verify.add_argument("dir", help="shard folder URL (with manifest.json)")
    rebuild = sub.add_parser("rebuild", help="regenerate shards from the manifest")
    rebuild.add_argument("dir", help="shard folder URL (with manifest.json)")
    rebuild.add_argument("--check", action="store_true", required=True, help="compare bytes")
    rebuild.add_argument("--split", choices=["train", "val"], action="append")
    rebuild.add_argument("--shard", type=int, action="append", help="only these shard indices")
    rebuild.add_argument(
        "--into", default="", help="scratch folder URL (default: a local temp dir)"
    )
    rebuild.add_argument("overrides", nargs="*", help="ray.* / shards.* execution overrides")
    return parser


def _report(report: dict, title: str) -> int:
    for error in report["errors"]:
        print(f"MISMATCH {error}", file=sys.stderr)
    summary = {k: v for k, v in report.items() if k != "errors"}
    print(json.dumps({"check": title, **summary, "errors": len(report["errors"])}))
    return 0 if report["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    from pipeline.shard_check import rebuild_check, verify_shards
    from pipeline.shards import build_shards

    args = _parser().parse_args(argv)
    if args.action == "build":
        cfg = config_from_args(args)
        splits = ["train", "val"] if args.split == "all" else [args.split]
        for split in splits:
            manifest = build_shards(cfg, split)
        entries = {s: manifest["splits"][s] for s in splits}
        print(
            json.dumps(
                {s: {k: e[k] for k in ("count", "rejected", "bytes")} for s, e in entries.items()}
            )
        )
        return 0
    if args.action == "verify":
        return _report(verify_shards(args.dir), "verify")
    only = set(args.shard) if args.shard else None
    report = rebuild_check(args.dir, args.split, only, args.overrides, into=args.into or None)
    return _report(report, "rebuild")


if __name__ == "__main__":
    raise SystemExit(main())
