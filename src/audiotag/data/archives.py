"""Safe, atomic extraction of zip and tar archives, and joining of split zips.

An archive member with an absolute path, a ``..`` component, or a link pointing outside
the destination could overwrite any file the user can write ("zip slip"). Every member
is checked before anything is written; a bad one stops extraction with an error naming
the archive and the member. Members go to a temporary directory that is renamed into
place at the end, so a failed extraction leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from audiotag.core.errors import DataSourceError
from audiotag.core.io import atomic_path, plain_mode

logger = logging.getLogger(__name__)

# keep(member_name) -> extract it?  e.g. FSDD's archive also holds Python utilities
MemberFilter = Callable[[str], bool]


def _check_name(archive: Path, name: str) -> str:
    """The member's normalised relative path, or an error for an unsafe one."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataSourceError(f"{archive}: refusing member {name!r}: absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise DataSourceError(f"{archive}: refusing member {name!r}: '..' in its path")
    return posixpath.normpath("/".join(parts))


def _check_link(archive: Path, name: str, target: str) -> None:
    """A link must resolve inside the destination (relative to the link's own folder)."""
    if target.startswith(("/", "\\")):
        raise DataSourceError(f"{archive}: refusing member {name!r}: link to absolute "
                              f"path {target!r}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise DataSourceError(f"{archive}: refusing member {name!r}: link {target!r} "
                              "points outside the destination")


@contextmanager
def _atomic_tree(dest: Path) -> Iterator[Path]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    plain_mode(tmp, 0o777)  # readable by teammates, as a plain mkdir would be
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _zip_is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _extract_zip(archive: Path, dest: Path, keep: MemberFilter) -> int:
    count, links = 0, []
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # check every member before writing any
            name = _check_name(archive, info.filename)
            if _zip_is_link(info):
                _check_link(archive, name, zf.read(info).decode("utf-8", "replace"))
        for info in infos:
            name = _check_name(archive, info.filename)
            if not keep(name) or info.is_dir():
                continue
            if _zip_is_link(info):  # made last, so no file is ever written through a link
                links.append((name, zf.read(info).decode()))
                continue
            out = dest / name
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            count += 1
    root = os.path.realpath(dest)

    def inside(path: Path) -> bool:
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    for name, target in links:
        # a chain of links can lead out where each link alone stays inside: check where
        # this one lands (its folder) before creating it, and where it points after
        if not inside((dest / name).parent):
            raise DataSourceError(f"{archive}: refusing member {name!r}: its folder leads "
                                  "outside the destination through another link")
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, dest / name)
    for name, target in links:
        if not inside(dest / name):
            raise DataSourceError(f"{archive}: refusing member {name!r}: link {target!r} "
                                  "points outside the destination (through another link)")
    return count + len(links)


def _refused(archive: Path, err: tarfile.FilterError) -> DataSourceError:
    return DataSourceError(f"{archive}: refusing member {err.tarinfo.name!r}: {err}")


def _extract_tar(archive: Path, dest: Path, keep: MemberFilter) -> int:
    """tarfile's "data" filter (PEP 706) refuses links that lead outside ``dest`` (also
    through other links, as it extracts), links to absolute paths, devices and FIFOs, and
    drops setuid bits and owners; it strips a leading "/" and allows ``..`` that stays
    inside, which :func:`_check_name` refuses."""
    with tarfile.open(archive) as tf:
        chosen = []
        for m in tf.getmembers():  # check every member before writing any
            name = _check_name(archive, m.name)
            try:
                tarfile.data_filter(m, str(dest))
            except tarfile.FilterError as err:
                raise _refused(archive, err) from None
            if keep(name) and not m.isdir():
                chosen.append(m)
        try:
            tf.extractall(dest, members=chosen, filter="data")
        except tarfile.FilterError as err:  # a chain of links, seen once the first exist
            raise _refused(archive, err) from None
    return len(chosen)


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str],
                 keep: MemberFilter | None = None) -> Path:
    """Extract ``archive`` (zip or any tar) into ``dest`` atomically, refusing unsafe members.

    ``keep(name)`` selects members (all by default). ``dest`` is replaced as a whole.
    """
    archive, dest = Path(archive), Path(dest)
    keep = keep or (lambda name: True)
    with _atomic_tree(dest) as tmp:
        try:
            if zipfile.is_zipfile(archive):
                count = _extract_zip(archive, tmp, keep)
            elif tarfile.is_tarfile(archive):
                count = _extract_tar(archive, tmp, keep)
            else:
                raise DataSourceError(f"{archive}: neither a zip nor a tar archive")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
            raise DataSourceError(f"{archive}: corrupt archive: {err}") from None
    logger.info("extracted %d file(s) from %s", count, archive.name)
    return dest


# ------------------------------------------------------------------ integrity checks

# what a damaged archive raises while being read (zlib: a broken deflate stream)
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError,
                zlib.error, OSError, ValueError, NotImplementedError)


def check_zip(path: Path) -> tuple[str, tuple[int, int] | None] | None:
    """None for a zip whose every member reads back with a matching CRC, else ``(problem,
    (start, end))``: the byte span of the first bad member where one is to blame."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
            ends = [i.header_offset for i in infos[1:]] + [zf.start_dir]
            for info, end in zip(infos, ends, strict=True):
                try:
                    with zf.open(info) as fh:
                        while fh.read(1 << 20):
                            pass
                except _READ_ERRORS as err:
                    return (f"member {info.filename!r} is damaged ({err})",
                            (info.header_offset, end))
    except _READ_ERRORS as err:
        return f"not a valid zip archive ({err})", None
    return None


def check_archive(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a whole zip or tar archive, or None when it is.

    Judged by content, not by name (a download is checked as ``<name>.part``): a zip must
    have its central directory and every member's CRC right, a tar (any compression) must
    read to its end.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        bad = check_zip(path)
        return None if bad is None else bad[0]
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if member.isfile():
                    fh = tf.extractfile(member)
                    while fh is not None and fh.read(1 << 20):
                        pass
    except _READ_ERRORS as err:
        return f"not a valid zip or tar archive, or cut short ({err})"
    return None


# ----------------------------------------------------------------------- split zips
#
# `zip -s` writes NAME.z01, NAME.z02, ..., NAME.zip. Offsets in its central directory are
# relative to the start of the part ("disk") each member begins on, so the parts cannot
# simply be concatenated. join_split_zip concatenates them and rewrites the central
# directory with absolute offsets on a single disk (what `zip -s 0` does).

_CD_SIG, _EOCD_SIG = b"PK\x01\x02", b"PK\x05\x06"
_EOCD64_SIG, _LOC64_SIG, _SPAN_SIG = b"PK\x06\x06", b"PK\x06\x07", b"PK\x07\x08"
_CD = struct.Struct("<4s6H3L5H2L")  # 46-byte central directory header
_EOCD = struct.Struct("<4s4H2LH")  # 22-byte end of central directory record
_U32, _U16 = 0xFFFFFFFF, 0xFFFF


def split_parts(last: Path) -> list[Path]:
    """``X.z01, X.z02, ..., X.zip`` for ``last`` = ``X.zip`` (those that exist, in order)."""
    parts, i = [], 1
    while (p := last.with_suffix(f".z{i:02d}")).exists():
        parts.append(p)
        i += 1
    return [*parts, last]


def _span_marker(first: Path) -> int:
    """Bytes of the spanning marker at the start of the first part (not zip data)."""
    with open(first, "rb") as fh:
        return 4 if fh.read(4) == _SPAN_SIG else 0


def parts_holding(parts: list[Path], start: int, end: int) -> list[Path]:
    """The parts whose bytes make up ``[start, end)`` of the zip joined from ``parts``."""
    pos, hits = -_span_marker(parts[0]), []
    for part in parts:
        size = part.stat().st_size
        if pos < end and pos + size > start:
            hits.append(part)
        pos += size
    return hits


def _zip64_fields(extra: bytes) -> tuple[bytes, bytes | None]:
    """(extra without the zip64 field, the zip64 field's data or None)."""
    rest, z64, i = b"", None, 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        if tag == 1:
            z64 = extra[i + 4:i + 4 + size]
        else:
            rest += extra[i:i + 4 + size]
        i += 4 + size
    return rest, z64


def _rewrite_entry(cd: bytes, pos: int, disk_starts: list[int]) -> tuple[bytes, int]:
    """One central directory entry with an absolute offset; returns (bytes, next pos)."""
    f = list(_CD.unpack_from(cd, pos))
    if f[0] != _CD_SIG:
        raise DataSourceError("split zip: corrupt central directory")
    name_len, extra_len, comment_len = f[10], f[11], f[12]
    body = pos + _CD.size
    name = cd[body:body + name_len]
    extra = cd[body + name_len:body + name_len + extra_len]
    comment = cd[body + name_len + extra_len:body + name_len + extra_len + comment_len]
    rest, z64 = _zip64_fields(extra)
    values = list(struct.unpack(f"<{len(z64) // 8}Q", z64[:len(z64) // 8 * 8])) if z64 else []
    usize = values.pop(0) if f[8] == _U32 else f[8]
    csize = values.pop(0) if f[7] == _U32 else f[7]
    offset = values.pop(0) if f[16] == _U32 else f[16]
    disk = f[13]
    if disk == _U16 and z64 and len(z64) % 8 == 4:
        disk = struct.unpack_from("<L", z64, len(z64) - 4)[0]
    offset += disk_starts[disk]
    z64_out = [usize] if f[8] == _U32 else []
    z64_out += [csize] if f[7] == _U32 else []
    if offset >= _U32:
        z64_out.append(offset)
        f[16] = _U32
    else:
        f[16] = offset
    f[13] = 0
    extra = rest + (struct.pack(f"<HH{len(z64_out)}Q", 1, 8 * len(z64_out), *z64_out)
                    if z64_out else b"")
    f[11] = len(extra)
    return _CD.pack(*f) + name + extra + comment, body + name_len + extra_len + comment_len


def _read_eocd(last: bytes) -> tuple[int, int, int, int]:
    """(cd disk, cd offset on that disk, cd size, entries) from the last part's tail."""
    at = last.rfind(_EOCD_SIG)
    if at < 0:
        raise DataSourceError("split zip: no end-of-central-directory record in the last part")
    _, _, cd_disk, _, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(last, at)
    loc = last.rfind(_LOC64_SIG, 0, at)
    if loc >= 0 and at - loc == 20:  # zip64: the real values are in the zip64 EOCD
        _, _, eocd64_off, _ = struct.unpack_from("<4sLQL", last, loc)
        z = last.rfind(_EOCD64_SIG, 0, loc)
        _, _, _, _, _, cd_disk, _, entries, cd_size, cd_offset = struct.unpack_from(
            "<4sQ2H2L4Q", last, z)
    return cd_disk, cd_offset, cd_size, entries


def join_split_zip(parts: list[Path], out: Path) -> Path:
    """Concatenate split-zip ``parts`` (``.z01``... then ``.zip``) into one ordinary zip."""
    sizes = [p.stat().st_size for p in parts]
    skip = _span_marker(parts[0])
    # output offset of each part's byte 0 (offsets on disk 0 count the dropped marker)
    disk_starts = [sum(sizes[:i]) - skip for i in range(len(parts))]
    tail_len = min(sizes[-1], 1 << 16)
    with open(parts[-1], "rb") as fh:
        fh.seek(sizes[-1] - tail_len)
        tail = fh.read()
    cd_disk, cd_offset, cd_size, entries = _read_eocd(tail)
    cd = _read_span(parts, disk_starts[cd_disk] + skip + cd_offset, cd_size)
    new_cd, pos = b"", 0
    for _ in range(entries):
        entry, pos = _rewrite_entry(cd, pos, disk_starts)
        new_cd += entry
    # atomic_path: a killed join leaves no ~20 GB temporary behind for good
    with atomic_path(out) as tmp, open(tmp, "wb") as dst:
        data_end = disk_starts[cd_disk] + cd_offset  # member data ends where the CD began
        _copy_span(parts, skip, data_end, dst)
        dst.write(new_cd)
        dst.write(_end_records(data_end, len(new_cd), entries))
    logger.info("joined %d parts into %s", len(parts), out.name)
    return out


def _iter_span(parts: list[Path], start: int, length: int) -> Iterator[bytes]:
    """Bytes ``[start, start + length)`` of the parts' concatenation, in chunks."""
    pos = 0
    for part in parts:
        size = part.stat().st_size
        lo, hi = max(start - pos, 0), min(start + length - pos, size)
        if lo < hi:
            with open(part, "rb") as fh:
                fh.seek(lo)
                left = hi - lo
                while left:
                    chunk = fh.read(min(left, 1 << 22))
                    left -= len(chunk)
                    yield chunk
        pos += size


def _read_span(parts: list[Path], start: int, length: int) -> bytes:
    return b"".join(_iter_span(parts, start, length))


def _copy_span(parts: list[Path], start: int, length: int, dst) -> None:
    for chunk in _iter_span(parts, start, length):
        dst.write(chunk)


def _end_records(cd_offset: int, cd_size: int, entries: int) -> bytes:
    """EOCD (with zip64 records when the offsets or counts need them)."""
    big = cd_offset >= _U32 or cd_size >= _U32 or entries >= _U16
    out = b""
    if big:
        eocd64_at = cd_offset + cd_size
        out += struct.pack("<4sQ2H2L4Q", _EOCD64_SIG, 44, 45, 45, 0, 0, entries, entries,
                           cd_size, cd_offset)
        out += struct.pack("<4sLQL", _LOC64_SIG, 0, eocd64_at, 1)
    n = min(entries, _U16)
    out += _EOCD.pack(_EOCD_SIG, 0, 0, n, n, min(cd_size, _U32), min(cd_offset, _U32), 0)
    return out
