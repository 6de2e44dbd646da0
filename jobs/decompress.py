"""``textboost decompress FILE.tbx -o OUT.png --model MODEL``: decode a container.

The model must be the one that encoded the file (its identity is recorded in the container);
any other model, or a damaged file, fails with a clear error. Containers are untrusted input:
besides the bounds the codec checks before entropy decoding, the decoding runs in a child
process (``--in-process`` turns that off), so that even a crash of native code (compressai,
torch, Pillow) ends in a one-line error instead of taking the caller down.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from jobs.common import check_model_service, positive_int, refuse_same_file, write_output
from textboost.codec.container import MAX_PIXELS
from textboost.errors import ContainerError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textboost decompress", description=__doc__.split("\n")[0]
    )
    parser.add_argument("container", help="input .tbx file")
    parser.add_argument("-o", "--output", required=True, help="output image (PNG)")
    parser.add_argument(
        "--model", required=True, help="checkpoint path/URL, MLflow model URI or zoo:NAME"
    )
    parser.add_argument(
        "--max-pixels", type=positive_int, default=MAX_PIXELS,
        help=f"refuse containers declaring more pixels (default {MAX_PIXELS}, as compress)",
    )  # fmt: skip
    parser.add_argument(
        "--in-process", action="store_true",
        help="decode in this process (no child process guarding against native crashes)",
    )  # fmt: skip
    return parser


def _child_env() -> dict:
    """The environment of the decoding child: this one, plus the MLflow URIs this process
    set in code (``models:/`` URIs resolve the same way in the child)."""
    env = dict(os.environ)
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        env.setdefault("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
        env.setdefault("MLFLOW_REGISTRY_URI", mlflow.get_registry_uri())
    return env


def _decode_in_child(args: argparse.Namespace) -> int:
    cmd = [
        sys.executable, "-m", "jobs.cli", "decompress", args.container,
        "-o", args.output, "--model", args.model, "--max-pixels", str(args.max_pixels),
        "--in-process",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
    sys.stdout.write(proc.stdout)  # relayed: callers see one process's output
    sys.stderr.write(proc.stderr)
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise ContainerError(
            f"decoding {args.container} crashed the decoder ({name}): the file is damaged "
            f"or hostile; nothing was written to {args.output}"
        )
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    refuse_same_file(args.container, args.output)
    refuse_same_file(args.model, args.output)
    try:
        with open(args.container, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ContainerError(
            f"cannot read container {args.container}: {exc.strerror or exc}"
        ) from None
    if not args.in_process:
        return _decode_in_child(args)

    import io

    from textboost.codec.image_codec import decode_container
    from textboost.model.checkpoint import load_checkpoint

    check_model_service(args.model)
    model, _ = load_checkpoint(args.model)
    image = decode_container(model, data, args.max_pixels)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_output(args.output, buf.getvalue(), "image")
    print(f"{args.output}: {image.width}x{image.height} from {len(data)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
