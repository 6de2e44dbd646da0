"""The deterministic shard tar: samples in order, fields sorted, fixed member metadata."""

from __future__ import annotations

import io
import tarfile

TAR_MTIME = 946684800  # 2000-01-01T00:00:00Z for every tar member


def write_tar(samples: list[dict[str, bytes]], fileobj: io.IOBase) -> dict[str, int]:
    """A deterministic tar: samples in order, fields sorted, fixed member metadata."""
    field_bytes: dict[str, int] = {}
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            key = sample["__key__"].decode()
            for ext in sorted(k for k in sample if k != "__key__"):
                data = sample[ext]
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
                field = "image" if ext in ("jpg", "png") else ext
                field_bytes[field] = field_bytes.get(field, 0) + len(data)
    return dict(sorted(field_bytes.items()))
