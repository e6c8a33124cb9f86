"""Atomic file and directory writes.

A stage killed halfway must never leave an output that looks complete, so every output
is written under a temporary name in the same directory and renamed into place (with the
mode a plain ``open``/``mkdir`` would give it under the umask, not mkstemp's 0600). The
temporary name carries the writer's process id (``.<name>.<pid>-<random>.partial``); one
left behind by a killed process (SIGKILL runs no cleanup) is removed by the next write of
the same output, and never one whose process still runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from audiotag.core.errors import AudioError, DataSourceError, ManifestError

logger = logging.getLogger(__name__)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale_partials(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``path`` left by processes that no longer run.

    Only ``path``'s own pattern is touched (not other outputs beside it), and only names
    that carry a process id (older, pid-less leftovers are left alone: nothing tells
    whether they are in use).
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)-[a-z0-9_]+\.partial")
    removed = []
    if not path.parent.is_dir():
        return removed
    for entry in path.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match is None or _running(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        logger.info("removed stale %s (left by process %s, which no longer runs)", entry,
                    match.group(1))
        removed.append(entry)
    return removed


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_mode(tmp: Path, base: int) -> None:
    """Give ``tmp`` the mode a plain ``open()`` (``base`` 0o666) or ``mkdir`` (0o777) would:
    mkstemp/mkdtemp make it 0600/0700, which teammates on a shared machine cannot read."""
    os.chmod(tmp, base & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    plain_mode(tmp_path, 0o666)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory; it replaces ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".partial", dir=path.parent))
    plain_mode(tmp, 0o777)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def path_renamer(tmp: str | os.PathLike[str],
                 final: str | os.PathLike[str]) -> Callable[[str], str]:
    """A function that rewrites ``tmp`` (as given, absolute or resolved) to ``final`` in text."""
    forms = sorted({os.fspath(tmp), os.path.abspath(tmp), str(Path(tmp).resolve())},
                   key=len, reverse=True)  # longest first: a relative form is inside the rest
    shown = os.fspath(final)

    def rename(text: str) -> str:
        for form in forms:
            text = text.replace(form, shown)
        return text

    return rename


class _Rename(logging.Filter):
    def __init__(self, rename: Callable[[str], str]) -> None:
        super().__init__()
        self.rename = rename

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.rename(record.getMessage()), None
        return True


@contextlib.contextmanager
def shown_as(tmp: str | os.PathLike[str],
             final: str | os.PathLike[str]) -> Iterator[Callable[[str], str]]:
    """Inside the block, log lines and user errors name ``final`` instead of ``tmp``.

    For an output built in a temporary directory (:func:`atomic_dir`): a message naming
    the temporary path names something that is gone once the stage ends. Yields the
    renaming function, for text written into files (e.g. ``bad_clips.csv``).
    """
    rename = path_renamer(tmp, final)
    filt = _Rename(rename)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(filt)
    try:
        yield rename
    except (AudioError, DataSourceError, ManifestError) as err:
        text = str(err)
        if rename(text) == text:
            raise
        raise type(err)(rename(text)) from err
    finally:
        for handler in handlers:
            handler.removeFilter(filt)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
