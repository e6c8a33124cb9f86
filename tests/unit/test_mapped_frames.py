"""MappedFrames: a store's frame arrays read through a memory map whose pages do not pile up
in the process's resident set as a large store is read (the memory of every stage that
reads the store would otherwise grow with the dataset)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from audiotag.data.manifest import SUBSETS
from audiotag.features import frames as frames_module
from audiotag.features.frames import MappedFrames

DIM = 64


def _store(root: Path, rows: dict[str, int]) -> dict[str, np.ndarray]:
    arrays = {}
    rng = np.random.default_rng(0)
    for subset in SUBSETS:
        arrays[subset] = rng.standard_normal((rows.get(subset, 0), DIM)).astype(np.float16)
        np.save(root / f"{subset}.npy", arrays[subset])
    return arrays


def _rss_file_kib() -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"RssFile:\s+(\d+) kB", text).group(1))


def test_reads_the_rows_and_survives_pickling_and_a_release(tmp_path):
    arrays = _store(tmp_path, {"curated": 50, "noisy": 7})  # test: an empty subset
    mapped = MappedFrames(tmp_path)
    assert np.array_equal(mapped.read("curated", 10, 5), arrays["curated"][10:15])
    view = mapped.read("noisy", 0, 7)
    mapped.release()
    assert np.array_equal(view, arrays["noisy"])  # the pages come back from the file
    assert mapped.read("test", 0, 0).shape == (0, DIM)
    copy = pickle.loads(pickle.dumps(mapped))
    assert len(pickle.dumps(mapped)) < 1000  # the path, not the arrays
    assert np.array_equal(copy.read("curated", 45, 5), arrays["curated"][45:])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc needed")
@pytest.mark.parametrize("release_bytes, bounded", [(4 * 2**20, True), (2**40, False)])
def test_reading_a_whole_store_keeps_few_pages_resident(tmp_path, monkeypatch,
                                                         release_bytes, bounded):
    """48 MiB of frames read clip by clip: with releases every 4 MiB the process keeps a
    few MiB of them; without (the control), all of them."""
    rows = 48 * 2**20 // (DIM * 2)
    _store(tmp_path, {"noisy": rows})
    monkeypatch.setattr(frames_module, "RELEASE_BYTES", release_bytes)
    mapped = MappedFrames(tmp_path)
    before = _rss_file_kib()
    total = 0.0
    for start in range(0, rows, 100):
        total += float(np.asarray(mapped.read("noisy", start, 100), dtype=np.float32)[0, 0])
    grown_mib = (_rss_file_kib() - before) / 1024
    if bounded:
        assert grown_mib < 12
    else:
        assert grown_mib > 40
