"""Content fingerprints of the files and folders a source reads from outside the pipeline.

dvc.yaml makes each ``data.inputs`` entry a dependency of a small stage ``input@<name>``
that writes the fingerprint; ``download`` depends on the fingerprints, so an edited label
CSV or an overwritten clip re-runs it (see :func:`audiotag.data.sources.parse_inputs`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: str | os.PathLike[str]) -> dict[str, object]:
    """``{"files": n, "bytes": total, "sha256": ...}`` over the relative names and contents
    of every file under ``path`` (or of the one file); the path itself is not part of it, so
    moving the same data elsewhere changes nothing."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or directory")
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest, total = hashlib.sha256(), 0
    for file in files:
        name = file.relative_to(root).as_posix() if root.is_dir() else file.name
        digest.update(f"{name}\0{_file_digest(file)}\n".encode())
        total += file.stat().st_size
    return {"files": len(files), "bytes": total, "sha256": digest.hexdigest()}
