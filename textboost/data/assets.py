"""Training and validation assets: natural photographs and fonts, installed by the project.

Only these sources are used (DEVELOPERS.md), so held-out checks stay clean:

* photographs: Debian ``mate-backgrounds`` (its ``nature/`` photos), ``ukui-wallpapers``,
  ``gnome-backgrounds`` (raster files), and the sample images inside the scikit-image and
  scikit-learn wheels;
* fonts: DejaVu (on the machine), Pillow's built-in font, and Debian ``fonts-noto-core``,
  ``fonts-roboto-unhinted``, ``fonts-open-sans``, ``fonts-lato``, ``fonts-crosextra-carlito``,
  ``fonts-crosextra-caladea``.

``python -m textboost.data.assets [--root DIR]`` downloads the packages (``apt-get download`` +
``dpkg -x``, ``pip download``) and lays them out as::

    assets/photos/train/     photos for training crops and synthetic backgrounds
    assets/photos/heldout/   photos never used in training (validation backgrounds, text-free set)
    assets/fonts/train/      Noto Sans/Serif, Roboto (+ DejaVu from the system, + Pillow's font)
    assets/fonts/heldout/    Lato, Open Sans, Carlito, Caladea (validation text only)
    assets/valset/           the validation set: 48 synthetic scene-text images (768-1024 px,
                             TextOCR layout) over held-out photos, in held-out fonts
    assets/textfree/         the text-free set (paper 5.2.6, Kodak's role): 46 crops of the
                             held-out photos, 768x512 where the photo allows, no text drawn

The split is fixed by file name (``HELDOUT_PHOTOS``), so every machine holds out the same
photos. Rerunning is a no-op when ``assets/.complete`` exists.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from textboost.errors import TextBoostError

ASSET_ROOT = Path("assets")
DEBIAN_PHOTOS = ("mate-backgrounds", "ukui-wallpapers", "gnome-backgrounds")
DEBIAN_FONTS = (
    "fonts-noto-core",
    "fonts-roboto-unhinted",
    "fonts-open-sans",
    "fonts-lato",
    "fonts-crosextra-carlito",
    "fonts-crosextra-caladea",
)
WHEELS = ("scikit-image", "scikit-learn")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# Held out from every training crop: validation backgrounds and the text-free set.
HELDOUT_PHOTOS = frozenset(
    {
        "mate-nature-Aqua.jpg",
        "mate-nature-Garden.jpg",
        "mate-nature-Storm.jpg",
        "mate-nature-YellowFlower.jpg",
        "ukui-calla.png",
        "ukui-goldfish.png",
        "ukui-the-mouse.jpg",
        "skimage-coffee.png",
        "skimage-chelsea.png",
        "sklearn-china.jpg",
        "sklearn-flower.jpg",
    }
)
# skimage sample files that are photographs (the rest are synthetic, tiny or medical).
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "rocket.jpg",
    "page.png",
    "retina.jpg",
    "rough-wall.png",
    "color.png",
)
HELDOUT_FONT_PREFIXES = ("Lato-", "OpenSans", "Carlito-", "Caladea-")
TRAIN_FONT_PREFIXES = ("NotoSans-", "NotoSerif-", "NotoSansMono-", "Roboto-", "RobotoCondensed-")


class AssetError(TextBoostError):
    """Assets could not be installed (no package registry, missing tool)."""


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=900)
    except FileNotFoundError:
        raise AssetError(f"`{cmd[0]}` not found: assets need Debian's apt-get/dpkg") from None
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        raise AssetError(f"`{' '.join(cmd)}` failed: {' '.join(tail)}") from None
    except subprocess.TimeoutExpired:
        raise AssetError(f"`{' '.join(cmd)}` timed out after 900 s") from None


def _photo_name(rel: str) -> str | None:
    """Flat asset name for a packaged file, or None if it is not one of our photos."""
    p = Path(rel)
    if p.suffix.lower() not in PHOTO_SUFFIXES:
        return None
    parts = p.parts
    if "mate" in parts:
        return f"mate-nature-{p.name}" if "nature" in parts else None
    if "gnome" in parts:
        return f"gnome-{p.name}"
    if "backgrounds" in parts:
        return f"ukui-{p.name}"
    return None


def install(root: Path = ASSET_ROOT, quiet: bool = False) -> Path:
    """Download and lay out every asset under ``root``; returns ``root``."""
    root = Path(root)
    if (root / ".complete").exists():
        return root
    dirs = {k: root / k for k in ("photos/train", "photos/heldout", "fonts/train", "fonts/heldout")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="textboost-assets-") as tmp:
        tmp = Path(tmp)
        say = (lambda *_: None) if quiet else (lambda m: print(f"  assets: {m}", flush=True))
        say("apt-get download " + " ".join(DEBIAN_PHOTOS + DEBIAN_FONTS))
        _run(["apt-get", "download", *DEBIAN_PHOTOS, *DEBIAN_FONTS], tmp)
        tree = tmp / "x"
        for deb in sorted(tmp.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(tree)], tmp)
        for path in sorted((tree / "usr/share/backgrounds").rglob("*")):
            name = _photo_name(str(path.relative_to(tree / "usr/share")))
            if name and path.is_file():
                split = "heldout" if name in HELDOUT_PHOTOS else "train"
                shutil.copyfile(path, dirs[f"photos/{split}"] / name)
        for path in sorted((tree / "usr/share/fonts").rglob("*.ttf")):
            if path.name.startswith(HELDOUT_FONT_PREFIXES):
                shutil.copyfile(path, dirs["fonts/heldout"] / path.name)
            elif path.name.startswith(TRAIN_FONT_PREFIXES):
                shutil.copyfile(path, dirs["fonts/train"] / path.name)
        say("pip download " + " ".join(WHEELS))
        wheels = tmp / "wheels"
        _run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:"]
            + ["-d", str(wheels), *WHEELS],
            tmp,
        )
        for whl in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(whl) as zf:
                for member in sorted(zf.namelist()):
                    p = Path(member)
                    if p.name in SKIMAGE_PHOTOS and p.parent.name == "data" and "skimage" in member:
                        name = f"skimage-{p.name}"
                    elif p.suffix == ".jpg" and "sklearn/datasets/images" in member:
                        name = f"sklearn-{p.name}"
                    else:
                        continue
                    split = "heldout" if name in HELDOUT_PHOTOS else "train"
                    (dirs[f"photos/{split}"] / name).write_bytes(zf.read(member))
    counts = {k: sum(1 for _ in d.iterdir()) for k, d in dirs.items()}
    if min(counts.values()) == 0:
        raise AssetError(f"asset install incomplete under {root}: {counts}")
    write_valset(root)
    write_textfree(root)
    (root / ".complete").write_text(repr(counts) + "\n")
    if not quiet:
        print(f"  assets: {counts} under {root}", flush=True)
    return root


VALSET = {"images": 48, "seed": 20261201, "max_side": 1024, "min_side": 768, "words": (10, 24)}


def write_valset(root: Path = ASSET_ROOT) -> dict:
    """The validation set (``root/valset``): held-out photos as backgrounds, held-out fonts,
    so nothing in it was seen in training. Same bytes on every machine."""
    from textboost.data.synth_sets import generate

    return generate(
        root / "valset", VALSET["images"], VALSET["seed"], fmt="textocr",
        backgrounds=root / "photos/heldout", max_side=VALSET["max_side"],
        min_side=VALSET["min_side"], words=VALSET["words"], split="val",
        fonts=str(root / "fonts/heldout"),
    )  # fmt: skip


TEXTFREE_SIZE = (768, 512)  # Kodak's size


def textfree_crops(image):
    """Deterministic crops of one photo for the text-free set: a photo no larger than
    ``TEXTFREE_SIZE`` is kept whole; a larger one gives the whole photo scaled to 768 px wide,
    four corner crops of it scaled to 1,536 px wide, and a centre crop at full resolution."""
    from PIL import Image

    cw, ch = TEXTFREE_SIZE
    w, h = image.size
    if w <= cw or h <= ch:
        return [image]
    whole = image.resize((cw, max(1, round(h * cw / w))), Image.Resampling.LANCZOS)
    big = image.resize((2 * cw, max(ch, round(h * 2 * cw / w))), Image.Resampling.LANCZOS)
    bh = big.size[1]
    corners = [big.crop((x, y, x + cw, y + ch)) for y in (0, bh - ch) for x in (0, cw)]
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return [whole, *corners, image.crop((x0, y0, x0 + cw, y0 + ch))]


def write_textfree(root: Path = ASSET_ROOT) -> list[Path]:
    """The text-free evaluation set (``root/textfree/images``, PNG): crops of the held-out
    photos only, so TextBoost can be checked against its backbone where there is no text
    (paper 5.2.6 uses Kodak). Same bytes on every machine."""
    from PIL import Image

    out = root / "textfree" / "images"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted((root / "photos" / "heldout").iterdir()):
        with Image.open(path) as im:
            crops = textfree_crops(im.convert("RGB"))
        for i, crop in enumerate(crops):
            target = out / f"{path.stem}-{i}.png"
            crop.save(target, optimize=False)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m textboost.data.assets", description=__doc__.split("\n")[0]
    )
    p.add_argument("--root", default=str(ASSET_ROOT), help="where to lay out the assets")
    args = p.parse_args(argv)
    try:
        install(Path(args.root))
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
