"""``textboost decompress FILE.tbx -o OUT.png --model MODEL``: decode a container.

The model must be the one that encoded the file (its identity is recorded in the container);
any other model, or a damaged file, fails with a clear error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from textboost.errors import ContainerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="textboost decompress", description=__doc__.split("\n")[0]
    )
    parser.add_argument("container", help="input .tbx file")
    parser.add_argument("-o", "--output", required=True, help="output image (PNG)")
    parser.add_argument(
        "--model", required=True, help="checkpoint path/URL, MLflow model URI or zoo:NAME"
    )
    args = parser.parse_args(argv)

    from textboost.checkpoint import load_checkpoint
    from textboost.codec import decode_container

    try:
        data = Path(args.container).read_bytes()
    except OSError as exc:
        raise ContainerError(f"cannot read container {args.container}: {exc}") from None
    model, _ = load_checkpoint(args.model)
    image = decode_container(model, data)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    image.save(args.output, format="PNG")
    print(f"{args.output}: {image.width}x{image.height} from {len(data)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
