"""Image quality and rate metrics (paper 5.1.3): PSNR, MS-SSIM, LPIPS, bpp.

- PSNR over 8-bit RGB (peak 255), all pixels and channels; ``inf`` for identical images.
- MS-SSIM with ``pytorch_msssim`` (Gaussian window 11, sigma 1.5, the standard five scale
  weights). The public ``ms_ssim`` needs the short side > 160 px. Smaller images use fewer
  scales instead of padding (padding would add invented content): the number of scales is the
  largest L <= 5 with short side > 10 * 2**(L-1), the first L weights renormalized to sum to 1.
  With L = 1 this is plain SSIM. Images whose short side is <= 10 px give ``None``.
- LPIPS (AlexNet, v0.1) only when both weight files are on this machine already: torchvision's
  AlexNet ``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth`` and the LPIPS linear layers
  (``<torch hub dir>/checkpoints/lpips_alex_v0.1.pth``, or the file shipped inside an installed
  ``lpips`` package, located without importing it). Nothing is downloaded; without the files
  LPIPS is unavailable and reported as ``None`` ("n/a"), never as a number.
- bpp: bytes * 8 over the ORIGINAL pixel count (not the padded one).
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MSSSIM_WIN = 11
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_LIN_FILE = "lpips_alex_v0.1.pth"


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """HxWx3 uint8 array of an image (PIL in any mode, or an array)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 array, got {arr.dtype} {arr.shape}")
    return arr


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    x, y = to_rgb_array(a), to_rgb_array(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in size: {x.shape} vs {y.shape}")
    return x, y


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    """PSNR in dB of two 8-bit RGB images."""
    x, y = _pair(a, b)
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def msssim_scales(short_side: int) -> int:
    """Number of MS-SSIM scales usable for an image with this short side (0: none)."""
    levels = 0
    while levels < len(MSSSIM_WEIGHTS) and short_side > (MSSSIM_WIN - 1) * 2**levels:
        levels += 1
    return levels


def _as_tensor(arr: np.ndarray):
    import torch

    x = torch.from_numpy(np.array(arr, dtype=np.float64))  # HxWx3, a writable copy
    return x.permute(2, 0, 1)[None] / 255.0  # 1x3xHxW in [0, 1]


def ms_ssim(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float | None:
    """MS-SSIM in [0, 1] of two RGB images (fewer scales for small images, see module doc)."""
    import torch
    import torch.nn.functional as F
    from pytorch_msssim import ms_ssim as _ms_ssim
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    x, y = _pair(a, b)
    levels = msssim_scales(min(x.shape[:2]))
    if levels == 0:
        return None
    X, Y = _as_tensor(x), _as_tensor(y)  # 1x3xHxW float64 in [0, 1]
    with torch.no_grad():
        if levels == len(MSSSIM_WEIGHTS):
            return float(_ms_ssim(X, Y, data_range=1.0, win_size=MSSSIM_WIN))
        weights = torch.tensor(MSSSIM_WEIGHTS[:levels], dtype=X.dtype)
        weights = weights / weights.sum()
        win = _fspecial_gauss_1d(MSSSIM_WIN, 1.5).to(X.dtype).repeat(3, 1, 1, 1)
        mcs = []
        for i in range(levels):
            ssim_pc, cs = _ssim(X, Y, win=win, data_range=1.0, size_average=False, K=(0.01, 0.03))
            if i < levels - 1:
                mcs.append(torch.relu(cs))
                pad = [s % 2 for s in X.shape[2:]]
                X = F.avg_pool2d(X, kernel_size=2, padding=pad)
                Y = F.avg_pool2d(Y, kernel_size=2, padding=pad)
        stack = torch.stack(mcs + [torch.relu(ssim_pc)], dim=0)  # levels x 1 x 3
        return float(torch.prod(stack ** weights.view(-1, 1, 1), dim=0).mean())


def bpp(num_bytes: int, width: int, height: int) -> float:
    """Bits per pixel over the original pixel count."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return num_bytes * 8.0 / (width * height)


# ---------------------------------------------------------------- LPIPS (AlexNet, v0.1)


def lpips_weight_files(hub_dir: str | Path | None = None) -> tuple[Path, Path] | None:
    """(alexnet, linear) weight files if both are on this machine, else ``None``."""
    import torch

    ckpt = Path(hub_dir if hub_dir is not None else torch.hub.get_dir()) / "checkpoints"
    alex = ckpt / ALEXNET_FILE
    lins = [ckpt / LPIPS_LIN_FILE]
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.origin:
        lins.append(Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth")
    lin = next((p for p in lins if p.is_file()), None)
    return (alex, lin) if alex.is_file() and lin is not None else None


class _LPIPS:
    """LPIPS distance (Zhang et al. 2018), AlexNet variant, from local weight files."""

    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)
    CUTS = (2, 5, 8, 10, 12)  # relu1 .. relu5 in torchvision's alexnet.features

    def __init__(self, alex_file: Path, lin_file: Path) -> None:
        import torch
        from torchvision.models import alexnet

        net = alexnet()
        net.load_state_dict(torch.load(alex_file, map_location="cpu", weights_only=True))
        self.features = net.features.eval().double()
        lin = torch.load(lin_file, map_location="cpu", weights_only=True)
        self.lins = [lin[f"lin{i}.model.1.weight"].double() for i in range(5)]  # 1xCx1x1
        self.shift = torch.tensor(self.SHIFT, dtype=torch.float64).view(1, 3, 1, 1)
        self.scale = torch.tensor(self.SCALE, dtype=torch.float64).view(1, 3, 1, 1)

    def _feats(self, x):
        out, h, start = [], (x * 2 - 1 - self.shift) / self.scale, 0
        for cut in self.CUTS:
            h = self.features[start:cut](h)
            start = cut
            out.append(h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def __call__(self, x, y) -> float:
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            total = 0.0
            for fx, fy, w in zip(self._feats(x), self._feats(y), self.lins):
                total += float(F.conv2d((fx - fy) ** 2, w).mean())
        return total


@lru_cache(maxsize=4)
def _lpips_model(hub_dir: str | None) -> _LPIPS | None:
    files = lpips_weight_files(hub_dir)
    return None if files is None else _LPIPS(*files)


def lpips_available(hub_dir: str | None = None) -> bool:
    return lpips_weight_files(hub_dir) is not None


def lpips(a, b, hub_dir: str | None = None) -> float | None:
    """LPIPS distance (lower is better), or ``None`` when the weights are not available."""
    model = _lpips_model(None if hub_dir is None else str(hub_dir))
    if model is None:
        return None
    x, y = _pair(a, b)
    return model(_as_tensor(x), _as_tensor(y))


def image_metrics(original, decoded, with_lpips: bool = True) -> dict[str, float | None]:
    """PSNR, MS-SSIM and LPIPS (None when unavailable or not requested) of a reconstruction."""
    return {
        "psnr": psnr(original, decoded),
        "ms_ssim": ms_ssim(original, decoded),
        "lpips": lpips(original, decoded) if with_lpips else None,
    }
