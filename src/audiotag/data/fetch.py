"""Downloading dataset archives: cached, resumable, retried and checksum-verified.

pooch does the caching, retries and hash checks. Its own HTTP downloader restarts a
broken transfer from byte 0 (it streams into a fresh temporary file on every attempt),
which is hopeless for a 20 GB archive on a flaky link, so :class:`ResumableDownloader`
keeps the bytes received so far in ``<file>.part`` and asks for the rest with an HTTP
``Range`` request on the next attempt (or the next run).

Archives live in one cache shared by every clone and experiment: ``$AUDIO_DATA_CACHE``,
or by default the user cache directory (``~/.cache/audiotag`` on Linux), never the repo.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import pooch
import requests
from tqdm.auto import tqdm

from audiotag.core.errors import DataSourceError

logger = logging.getLogger(__name__)

CACHE_ENV = "AUDIO_DATA_CACHE"
RETRIES = 3
"""Extra attempts after a failed transfer (pooch waits 1 s, 2 s, 3 s between them)."""
TIMEOUT_S = 60
"""Seconds without a byte before a connection counts as dead (then retried, resumed)."""
_CHUNK = 1 << 16  # a read cut by a dropped connection loses at most this many bytes


def cache_dir() -> Path:
    """Where archives are kept: ``$AUDIO_DATA_CACHE`` or the user cache directory."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path(pooch.os_cache("audiotag")) / "datasets"


class ResumableDownloader:
    """A pooch downloader that resumes a cut transfer from ``part`` with a Range request.

    pooch calls it as ``downloader(url, output_file, pooch)`` and verifies the hash of
    ``output_file`` afterwards. Bytes go to ``part`` first; only a complete transfer is
    moved to ``output_file``, so a failed hash check discards it (no endless resuming of
    a corrupt file) while a cut connection keeps what it got for the next attempt.
    """

    def __init__(self, part: Path, progress: bool = True, timeout: float = TIMEOUT_S) -> None:
        self.part = Path(part)
        self.progress = progress
        self.timeout = timeout

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False):
        if check_only:  # pooch's "is it there?" probe
            return requests.head(url, timeout=self.timeout, allow_redirects=True).ok
        have = self.part.stat().st_size if self.part.exists() else 0
        # identity: byte offsets must refer to the file itself, not a compressed stream
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as resp:
            if have and resp.status_code == 416:  # nothing left to send: .part is complete
                total = have
            else:
                resp.raise_for_status()
                if resp.status_code != 206:  # the server ignored Range: start over
                    have = 0
                length = int(resp.headers.get("Content-Length") or 0)
                total = have + length if length else 0
                self._stream(resp, "ab" if have else "wb", have, total, url)
        got = self.part.stat().st_size
        if total and got < total:  # a server closing early without a protocol error
            raise requests.exceptions.ConnectionError(
                f"{url}: transfer cut at {got} of {total} bytes (will resume)")
        shutil.move(self.part, output_file)

    def _stream(self, resp: requests.Response, mode: str, have: int, total: int,
                url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        # disable=None: a bar on a terminal, plain logs (nothing) in CI
        bar = tqdm(total=total or None, initial=have, unit="B", unit_scale=True,
                   desc=name, disable=None if self.progress else True)
        with bar, open(self.part, mode) as out:
            for chunk in resp.iter_content(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def fetch(url: str, fname: str, known_hash: str | None, folder: str,
          retries: int | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``<cache>/<folder>/<fname>`` once; later calls reuse it.

    ``known_hash``: ``"md5:..."``, ``"sha1:..."`` or ``"sha256:..."`` (pooch syntax), or
    None where upstream publishes no checksum (logged; the caller then checks content).
    A cached file whose hash no longer matches is downloaded again.
    """
    retries = RETRIES if retries is None else retries
    target = cache_dir() / folder
    if known_hash is None:
        logger.info("%s: upstream publishes no checksum; verifying its content instead", fname)
        # without a hash the cache cannot tell two URLs' files apart: one folder per URL
        target = target / hashlib.sha1(url.encode()).hexdigest()[:10]
    target.mkdir(parents=True, exist_ok=True)
    downloader = ResumableDownloader(target / f"{fname}.part", progress=progress)
    try:
        # a one-file Pooch rather than pooch.retrieve: only Pooch objects retry
        store = pooch.create(path=target, base_url="", registry={fname: known_hash},
                             urls={fname: url}, retry_if_failed=retries)
        path = store.fetch(fname, downloader=downloader)
    except ValueError as err:  # pooch: hash mismatch after every attempt
        raise DataSourceError(f"{url}: checksum verification failed for {fname}: {err}") from None
    except requests.exceptions.RequestException as err:
        raise DataSourceError(f"{url}: download of {fname} failed after {retries + 1} "
                              f"attempt(s): {err}") from None
    return Path(path)


def verify(path: Path, known_hash: str | None) -> None:
    """Check a file the user already has (``local_dir``) against the published hash."""
    if known_hash is None:
        return
    alg, _, expected = known_hash.partition(":")
    actual = pooch.file_hash(str(path), alg=alg)
    if actual.lower() != expected.lower():
        raise DataSourceError(f"{path}: {alg} checksum mismatch: expected {expected}, "
                              f"got {actual} (a corrupt or different file)")


def obtain(url: str, fname: str, known_hash: str | None, folder: str,
           local_dir: Path | None = None, retries: int | None = None) -> Path:
    """``local_dir/fname`` if the user has it (verified), else :func:`fetch` it."""
    if local_dir is not None and (Path(local_dir) / fname).is_file():
        path = Path(local_dir) / fname
        logger.info("using local copy %s", path)
        verify(path, known_hash)
        return path
    return fetch(url, fname, known_hash, folder, retries=retries)
