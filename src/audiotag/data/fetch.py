"""Downloading dataset archives: cached, resumable, retried and verified.

A file enters the cache only when it is whole: every byte the server announced arrived
(Content-Length, Content-Range), its published checksum matches, and where upstream
publishes none, a content check passes (an archive: every zip CRC, a tar read to its end).
A broken transfer keeps the bytes received so far in ``<file>.part`` and asks for the rest
with an HTTP ``Range`` request on the next attempt (or the next run), since restarting a
20 GB archive from byte 0 is hopeless on a flaky link.

Only what can succeed on retry is retried: connection errors, timeouts and 5xx (also 408,
429). A 4xx fails at once; so does a checksum mismatch, unless the file was assembled from
a resumed transfer (the bytes kept from before the cut may be of an older file), which is
downloaded once more from byte 0. A cached file that fails its check is dropped and
downloaded again (once), with a log line.

Archives live in one cache shared by every clone and experiment: ``$AUDIO_DATA_CACHE``,
or by default the user cache directory (``~/.cache/audiotag`` on Linux), never the repo.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pooch
import requests
from tqdm.auto import tqdm

from audiotag.core.errors import DataSourceError

logger = logging.getLogger(__name__)

CACHE_ENV = "AUDIO_DATA_CACHE"
RETRIES = 3
"""Extra attempts after a transfer failed in a way a retry can fix (see module doc)."""
BACKOFF_S = 1.0
"""Wait before retry n: ``n * BACKOFF_S`` seconds."""
TIMEOUT_S = 60
"""Seconds without a byte before a connection counts as dead (then retried, resumed)."""
_CHUNK = 1 << 16  # a read cut by a dropped connection loses at most this many bytes
_RETRY_STATUS = {408, 425, 429}  # client errors that do go away (besides every 5xx)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

Check = Callable[[Path], str | None]
"""A content check for files without a published checksum: the problem, or None."""


def cache_dir() -> Path:
    """Where archives are kept: ``$AUDIO_DATA_CACHE`` or the user cache directory."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path(pooch.os_cache("audiotag")) / "datasets"


class ResumableDownloader:
    """Downloads ``url`` into ``part``, resuming from the bytes already there.

    Raises :class:`requests.RequestException` for a failed or incomplete transfer
    (:class:`requests.HTTPError` carries the status) and keeps what it got, except
    bytes that cannot belong to the file (more than announced, a misplaced range).
    """

    def __init__(self, part: Path, progress: bool = True, timeout: float = TIMEOUT_S) -> None:
        self.part = Path(part)
        self.progress = progress
        self.timeout = timeout

    def __call__(self, url: str) -> bool:
        """Complete ``part``; True if it kept bytes from an earlier transfer."""
        have = self.part.stat().st_size if self.part.exists() else 0
        # identity: byte offsets must refer to the file itself, not a compressed stream
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as resp:
            if have and resp.status_code == 416:  # nothing left to send: .part is complete
                return True
            resp.raise_for_status()
            if resp.status_code == 206:
                self._check_range(url, resp, have)
            else:  # the server ignored Range: start over
                have = 0
            length = int(resp.headers.get("Content-Length") or 0)
            total = have + length if length else 0
            self._stream(resp, "ab" if have else "wb", have, total, url)
        got = self.part.stat().st_size
        if total and got > total:  # not the file the server announced: keep none of it
            self.part.unlink()
            raise requests.exceptions.ConnectionError(
                f"{url}: got {got} bytes where the server announced {total}")
        if total and got < total:  # a server closing early without a protocol error
            raise requests.exceptions.ConnectionError(
                f"{url}: transfer cut at {got} of {total} bytes (will resume)")
        return have > 0

    def _check_range(self, url: str, resp: requests.Response, have: int) -> None:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != have:
            self.part.unlink()  # a range starting elsewhere cannot be appended
            raise requests.exceptions.ConnectionError(
                f"{url}: asked for bytes {have}-, got Content-Range "
                f"{resp.headers.get('Content-Range')!r}; starting over")

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


def _transfer(download: ResumableDownloader, url: str, fname: str, retries: int) -> bool:
    """Run ``download`` until it completes, retrying only what a retry can fix."""
    error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            logger.warning("%s: %s; retry %d of %d", fname, error, attempt, retries)
            time.sleep(BACKOFF_S * attempt)
        try:
            return download(url)
        except requests.exceptions.HTTPError as err:
            code = err.response.status_code if err.response is not None else 0
            if code < 500 and code not in _RETRY_STATUS:
                reason = f" {err.response.reason}" if err.response is not None else ""
                raise DataSourceError(f"{url}: HTTP {code}{reason} (not retried: the server "
                                      "refuses this URL)") from None
            error = err
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError) as err:
            error = err
        except requests.exceptions.RequestException as err:  # a bad URL, too many redirects
            raise DataSourceError(f"{url}: download of {fname} failed: {err}") from None
    raise DataSourceError(f"{url}: download of {fname} failed after {retries + 1} "
                          f"attempt(s): {error}")


def _hash_problem(path: Path, known_hash: str) -> str | None:
    alg, _, expected = known_hash.partition(":")
    actual = pooch.file_hash(str(path), alg=alg)
    if actual.lower() == expected.lower():
        return None
    return f"{alg} checksum mismatch: expected {expected}, got {actual}"


def _problem(path: Path, known_hash: str | None, check: Check | None) -> str | None:
    """Why ``path`` cannot be accepted, or None."""
    if known_hash is not None:
        problem = _hash_problem(path, known_hash)
        return None if problem is None else f"checksum verification failed ({problem})"
    return check(path) if check is not None else None


def fetch(url: str, fname: str, known_hash: str | None, folder: str,
          retries: int | None = None, progress: bool = True,
          check: Check | None = None) -> Path:
    """Download ``url`` to ``<cache>/<folder>/<fname>`` once; later calls reuse it.

    ``known_hash``: ``"md5:..."``, ``"sha1:..."`` or ``"sha256:..."``, or None where
    upstream publishes no checksum (logged); then ``check(path)`` (e.g.
    :func:`audiotag.data.archives.check_archive`) must pass instead. A cached file that
    fails either is dropped and downloaded again.
    """
    retries = RETRIES if retries is None else retries
    target = cache_dir() / folder
    if known_hash is None:
        logger.info("%s: upstream publishes no checksum; verifying its content instead", fname)
        # without a hash the cache cannot tell two URLs' files apart: one folder per URL
        target = target / hashlib.sha1(url.encode()).hexdigest()[:10]
    target.mkdir(parents=True, exist_ok=True)
    path = target / fname
    if path.is_file():
        problem = _problem(path, known_hash, check)
        if problem is None:
            return path
        logger.warning("cached %s is bad (%s); dropping it and downloading it again",
                       path, problem)
        path.unlink()
    download = ResumableDownloader(target / f"{fname}.part", progress=progress)
    for attempt in (1, 2):
        resumed = _transfer(download, url, fname, retries)
        problem = _problem(download.part, known_hash, check)
        if problem is None:
            os.replace(download.part, path)
            return path
        download.part.unlink(missing_ok=True)
        # a fresh copy helps only where the bytes may be the transfer's fault: a resumed
        # transfer, or a cut that no checksum or Content-Length revealed
        if attempt == 2 or not (resumed or known_hash is None):
            raise DataSourceError(f"{url}: {problem}")
        logger.warning("%s: the downloaded copy fails: %s; downloading it once more from "
                       "the start", url, problem)
    raise AssertionError("unreachable")


def verify(path: Path, known_hash: str | None) -> None:
    """Check a file the user already has (``local_dir``) against the published hash."""
    problem = None if known_hash is None else _hash_problem(path, known_hash)
    if problem is not None:
        raise DataSourceError(f"{path}: {problem} (a corrupt or different file)")


def obtain(url: str, fname: str, known_hash: str | None, folder: str,
           local_dir: Path | None = None, retries: int | None = None,
           check: Check | None = None) -> Path:
    """``local_dir/fname`` if the user has it (verified), else :func:`fetch` it."""
    if local_dir is not None and (Path(local_dir) / fname).is_file():
        path = Path(local_dir) / fname
        logger.info("using local copy %s", path)
        verify(path, known_hash)
        return path
    return fetch(url, fname, known_hash, folder, retries=retries, check=check)
