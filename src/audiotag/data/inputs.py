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


def walk(root: Path) -> tuple[list[tuple[str, Path]], list[tuple[Path, Path]]]:
    """The files under folder ``root`` by relative name, and the symlinked folders met on the
    way (link, resolved target). Symlinks are followed, to files and to folders alike; a link
    back to a folder above it (a cycle) is not entered again."""
    files: list[tuple[str, Path]] = []
    links: list[tuple[Path, Path]] = []

    def visit(folder: Path, prefix: str, above: frozenset[Path]) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():  # follows a symlink
                real = entry.resolve()
                if entry.is_symlink():
                    links.append((entry, real))
                if real not in above:
                    visit(entry, f"{prefix}{entry.name}/", above | {real})
            elif entry.is_file():
                files.append((f"{prefix}{entry.name}", entry))

    visit(root, "", frozenset({root.resolve()}))
    return sorted(files, key=lambda item: item[0].split("/")), links


def fingerprint(path: str | os.PathLike[str]) -> dict[str, object]:
    """``{"files": n, "bytes": total, "sha256": ...}`` over the relative names and contents
    of every file under ``path`` (or of the one file), what symlinks point at included; the
    path itself is not part of it, so moving the same data elsewhere changes nothing."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or directory")
    files = walk(root)[0] if root.is_dir() else [(root.name, root)]
    digest, total = hashlib.sha256(), 0
    for name, file in files:
        digest.update(f"{name}\0{_file_digest(file)}\n".encode())
        total += file.stat().st_size
    return {"files": len(files), "bytes": total, "sha256": digest.hexdigest()}
