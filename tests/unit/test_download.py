"""Downloads (resume, retry, checksums), safe extraction, split zips, audio screening."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fileserver import serve

from audiotag.core.errors import DataSourceError
from audiotag.data import archives, fetch
from audiotag.data.archives import join_split_zip, safe_extract, split_parts
from audiotag.data.screen import BAD_CLIPS_NAME, probe, screen_clips
from audiotag.features.audio import load_audio


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv(fetch.CACHE_ENV, str(path))
    return path


def _blob(tmp_path: Path, n: int = 300_000, name: str = "blob.bin") -> Path:
    path = tmp_path / "srv" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).bytes(n))
    return path


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------ downloads


def test_cache_dir_from_env(cache):
    assert fetch.cache_dir() == cache


def test_cache_dir_default_is_outside_the_repo(monkeypatch, repo_root):
    monkeypatch.delenv(fetch.CACHE_ENV, raising=False)
    assert repo_root not in fetch.cache_dir().parents


def test_download_verifies_and_caches(tmp_path, cache):
    blob = _blob(tmp_path)
    with serve() as srv:
        url = srv.add(blob)
        path = fetch.fetch(url, "blob.bin", _sha256(blob), "t", progress=False)
        assert path.read_bytes() == blob.read_bytes()
        assert path.parent.parent == cache
        fetch.fetch(url, "blob.bin", _sha256(blob), "t", progress=False)
        assert len(srv.requests) == 1  # the second call used the cache


def test_cut_transfer_resumes_with_a_range_request(tmp_path, cache):
    blob = _blob(tmp_path)
    with serve() as srv:
        url = srv.add(blob)
        srv.cut_once.add("/blob.bin")
        path = fetch.fetch(url, "blob.bin", _sha256(blob), "t", retries=2, progress=False)
    assert path.read_bytes() == blob.read_bytes()
    assert srv.requests[0] == ("/blob.bin", None)
    # the retry asked only for what was missing (the server cut after half the bytes)
    path_, rng = srv.requests[1]
    assert rng is not None and 0 < int(rng[6:-1]) <= blob.stat().st_size // 2
    assert not list(path.parent.glob("*.part"))


def test_partial_file_of_a_killed_run_is_resumed(tmp_path, cache):
    blob = _blob(tmp_path)
    part = cache / "t" / "blob.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(blob.read_bytes()[:100_000])  # what a killed earlier run left behind
    with serve() as srv:
        path = fetch.fetch(srv.add(blob), "blob.bin", _sha256(blob), "t", progress=False)
    assert srv.requests == [("/blob.bin", "bytes=100000-")]
    assert path.read_bytes() == blob.read_bytes() and not part.exists()


def test_failed_transfer_is_retried(tmp_path, cache):
    blob = _blob(tmp_path, 1000)
    with serve() as srv:
        url = srv.add(blob)
        srv.fail_times["/blob.bin"] = 1
        path = fetch.fetch(url, "blob.bin", _sha256(blob), "t", retries=1, progress=False)
    assert path.read_bytes() == blob.read_bytes()
    assert len(srv.requests) == 2


def test_checksum_mismatch_fails_clearly_and_keeps_nothing(tmp_path, cache):
    blob = _blob(tmp_path, 1000)
    wrong = "sha256:" + "0" * 64
    with serve() as srv:
        url = srv.add(blob)
        with pytest.raises(DataSourceError, match=r"blob\.bin.*checksum verification failed"):
            fetch.fetch(url, "blob.bin", wrong, "t", retries=0, progress=False)
    assert not (cache / "t" / "blob.bin").exists()
    assert not list((cache / "t").glob("*.part"))


def test_unreachable_url_names_the_file(cache):
    with serve() as srv, pytest.raises(DataSourceError, match=r"nothere\.zip: HTTP 404"):
        fetch.fetch(srv.url("nothere.zip"), "nothere.zip", None, "t", retries=0, progress=False)


@pytest.mark.parametrize("code", [404, 403, 410])
def test_client_error_fails_at_once_naming_the_url(cache, code):
    with serve() as srv:
        srv.status["/gone.zip"] = code
        with pytest.raises(DataSourceError, match=rf"{srv.url('gone.zip')}: HTTP {code}"):
            fetch.fetch(srv.url("gone.zip"), "gone.zip", None, "t", retries=3, progress=False)
    assert len(srv.requests) == 1  # a 4xx does not go away on retry


def test_server_error_is_retried(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(fetch, "BACKOFF_S", 0.0)
    blob = _blob(tmp_path, 1000)
    with serve() as srv:
        url = srv.add(blob)
        srv.fail_times["/blob.bin"], srv.fail_code["/blob.bin"] = 2, 500
        path = fetch.fetch(url, "blob.bin", _sha256(blob), "t", retries=3, progress=False)
    assert path.read_bytes() == blob.read_bytes() and len(srv.requests) == 3


def test_checksum_mismatch_is_not_retried_and_names_both_sums(tmp_path, cache):
    blob = _blob(tmp_path, 1000)
    wrong = "sha256:" + "0" * 64
    with serve() as srv:
        url = srv.add(blob)
        with pytest.raises(DataSourceError) as err:
            fetch.fetch(url, "blob.bin", wrong, "t", retries=3, progress=False)
    assert len(srv.requests) == 1
    text = str(err.value)
    assert url in text and "0" * 64 in text and _sha256(blob)[7:] in text


def test_stale_partial_that_spoils_the_checksum_is_downloaded_again(tmp_path, cache):
    blob = _blob(tmp_path)
    part = cache / "t" / "blob.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # a killed run's bytes of an older version of the file
    with serve() as srv:
        path = fetch.fetch(srv.add(blob), "blob.bin", _sha256(blob), "t", retries=0,
                           progress=False)
    assert srv.requests == [("/blob.bin", "bytes=1000-"), ("/blob.bin", None)]
    assert path.read_bytes() == blob.read_bytes()


def _archive(tmp_path: Path, kind: str) -> Path:
    src = tmp_path / "srv"
    src.mkdir(exist_ok=True)
    data = np.random.default_rng(2).bytes(200_000)
    if kind == "zip":
        out = src / "a.zip"
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("top/a.bin", data)
            zf.writestr("top/b.txt", b"end")
    else:
        out = src / "a.tar.gz"
        with tarfile.open(out, "w:gz") as tf:
            info = tarfile.TarInfo("top/a.bin")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_truncated_archive_without_checksum_is_never_cached(tmp_path, cache, kind, caplog):
    archive = _archive(tmp_path, kind)
    with serve() as srv:
        url = srv.add(archive)
        # the body stops early and Content-Length agrees with it: only the content can tell
        srv.short_once["/" + archive.name] = archive.stat().st_size * 2 // 3
        path = fetch.fetch(url, archive.name, None, "t", retries=0, progress=False,
                           check=archives.check_archive)
    assert path.read_bytes() == archive.read_bytes()
    assert len(srv.requests) == 2 and "downloading it once more" in caplog.text


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_corrupt_cached_archive_is_dropped_and_fetched_again(tmp_path, cache, kind, caplog):
    archive = _archive(tmp_path, kind)
    with serve() as srv:
        url = srv.add(archive)
        first = fetch.fetch(url, archive.name, None, "t", retries=0, progress=False,
                            check=archives.check_archive)
        first.write_bytes(archive.read_bytes()[:50_000])  # what older code kept as complete
        again = fetch.fetch(url, archive.name, None, "t", retries=0, progress=False,
                            check=archives.check_archive)
    assert again.read_bytes() == archive.read_bytes() and len(srv.requests) == 2
    assert f"cached {again} is bad" in caplog.text and "downloading it again" in caplog.text


def test_archive_check_fails_twice_then_names_the_url(tmp_path, cache):
    bad = tmp_path / "srv" / "x.zip"
    bad.parent.mkdir()
    bad.write_bytes(b"<html>rate limited</html>")
    with serve() as srv:
        url = srv.add(bad)
        with pytest.raises(DataSourceError, match=rf"{url}: .*not a valid zip"):
            fetch.fetch(url, "x.zip", None, "t", retries=0, progress=False,
                        check=archives.check_archive)
    assert len(srv.requests) == 2
    assert not list((cache / "t").rglob("x.zip*"))


def test_local_copy_is_verified(tmp_path, cache):
    blob = _blob(tmp_path, 1000)
    assert fetch.obtain("http://127.0.0.1:9/x", "blob.bin", _sha256(blob), "t",
                        local_dir=blob.parent) == blob
    with pytest.raises(DataSourceError, match=r"blob\.bin: sha256 checksum mismatch"):
        fetch.obtain("http://127.0.0.1:9/x", "blob.bin", "sha256:" + "1" * 64, "t",
                     local_dir=blob.parent)


# ----------------------------------------------------------------------- extraction


def _zip_with(path: Path, name: str, data: bytes = b"x", link: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("top/ok.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (0o120777 << 16)  # a symlink; data is its target
        zf.writestr(info, data)
    return path


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("top/ok.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(("name", "link", "why"), [
    ("/etc/evil.txt", False, "absolute path"),
    ("top/../../evil.txt", False, r"'\.\.' in its path"),
    ("top/link", True, "points outside"),
])
def test_zip_slip_is_refused(tmp_path, name, link, why):
    data = b"../../outside" if link else b"x"
    archive = _zip_with(tmp_path / "bad.zip", name, data, link)
    with pytest.raises(DataSourceError, match=rf"bad\.zip: refusing member .*{why}"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-extracted
    assert not list(tmp_path.glob(".out.*"))
    assert not (tmp_path.parent / "evil.txt").exists()


def test_zip_link_chain_out_is_refused(tmp_path):
    archive = tmp_path / "chain.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, target in (("d1", "."), ("d1/up", ".."), ("d1/up/evil", "x")):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    with pytest.raises(DataSourceError, match=r"chain\.zip: refusing member 'd1/up"):
        safe_extract(archive, tmp_path / "out")  # each link alone stays inside
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil").exists() and not (tmp_path / "evil").is_symlink()


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "hardlink"])
def test_tar_slip_is_refused(tmp_path, kind):
    if kind == "absolute":
        member, data = tarfile.TarInfo("/tmp/evil.txt"), b"x"
    elif kind == "dotdot":
        member, data = tarfile.TarInfo("top/../../evil.txt"), b"x"
    else:
        member, data = tarfile.TarInfo("top/link"), b""
        member.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        member.linkname = "../../etc/passwd" if kind == "symlink" else "/etc/passwd"
    archive = _tar_with(tmp_path / "bad.tar.gz", member, data)
    with pytest.raises(DataSourceError, match=r"bad\.tar\.gz: refusing member"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tar_link_chain_out_is_refused_by_the_data_filter(tmp_path):
    # each link alone stays inside; together they lead out: tarfile's "data" filter sees
    # it while extracting, and the error names the member (not a "corrupt archive")
    archive = tmp_path / "chain.tar"
    with tarfile.open(archive, "w") as tf:
        for name, target in (("d1", "."), ("d1/up", "..")):
            member = tarfile.TarInfo(name)
            member.type, member.linkname = tarfile.SYMTYPE, target
            tf.addfile(member)
        evil = tarfile.TarInfo("d1/up/evil")
        evil.size = 1
        tf.addfile(evil, io.BytesIO(b"x"))
    with pytest.raises(DataSourceError,
                       match=r"chain\.tar: refusing member 'd1/up': .*outside the destination"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil").exists()


def test_tar_special_file_is_refused_by_the_data_filter(tmp_path):
    member = tarfile.TarInfo("top/fifo")
    member.type = tarfile.FIFOTYPE
    archive = _tar_with(tmp_path / "bad.tar.gz", member)
    with pytest.raises(DataSourceError, match=r"bad\.tar\.gz: refusing member 'top/fifo': "
                                              r".*is a special file"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safe_extract_keeps_only_selected_members_and_inner_links(tmp_path):
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/a.wav", b"a")
        zf.writestr("top/tools.py", b"print()")
        info = zipfile.ZipInfo("top/b.wav")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, b"a.wav")  # a link inside the tree is fine
    out = safe_extract(archive, tmp_path / "out", keep=lambda n: n.endswith(".wav"))
    assert sorted(p.name for p in (out / "top").iterdir()) == ["a.wav", "b.wav"]
    assert (out / "top" / "b.wav").read_bytes() == b"a"


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP (zip -s)")
def test_split_zip_is_joined(tmp_path):
    src = tmp_path / "d"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        (src / f"f{i}.bin").write_bytes(rng.bytes(50_000))  # incompressible: spans parts
    subprocess.run(["zip", "-q", "-s", "64k", "-r", "noisy.zip", "d"], cwd=tmp_path,
                   check=True)
    parts = split_parts(tmp_path / "noisy.zip")
    assert [p.name for p in parts] == ["noisy.z01", "noisy.z02", "noisy.z03", "noisy.zip"]
    joined = join_split_zip(parts, tmp_path / "joined.zip")
    with zipfile.ZipFile(joined) as zf:
        assert zf.testzip() is None
    out = safe_extract(joined, tmp_path / "out")
    for i in range(4):
        assert (out / "d" / f"f{i}.bin").read_bytes() == (src / f"f{i}.bin").read_bytes()


# ---------------------------------------------------------------- audio and screening


@pytest.mark.parametrize(("fmt", "subtype", "sr", "channels"), [
    ("WAV", "PCM_U8", 8000, 1),
    ("WAV", "PCM_24", 22050, 2),
    ("WAV", "PCM_32", 11025, 1),
    ("WAV", "FLOAT", 44100, 2),
    ("FLAC", "PCM_16", 12345, 1),  # an odd sample rate
    ("OGG", "VORBIS", 16000, 2),
    ("AU", "PCM_16", 22050, 1),  # GTZAN's format
    ("MP3", "MPEG_LAYER_III", 22050, 2),  # FMA's format (libsndfile >= 1.1 decodes MP3)
])
def test_audio_formats_load(tmp_path, fmt, subtype, sr, channels):
    t = np.arange(sr) / sr
    wave = 0.5 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, data, sr, format=fmt, subtype=subtype)
    duration, rate, problem, warning = probe(path)
    assert problem == "" and warning == "" and rate == sr
    assert duration == pytest.approx(1.0, abs=0.06)
    out = load_audio(path, 16000)
    assert out.ndim == 1 and abs(len(out) - 16000) < 0.06 * 16000
    assert 0.3 < float(out.abs().max()) < 0.7


def test_screening_reports_and_excludes_bad_clips(tmp_path):
    sr = 8000
    sf.write(tmp_path / "good.wav", 0.1 * np.ones(sr), sr)
    sf.write(tmp_path / "silent.wav", np.zeros(sr), sr)
    sf.write(tmp_path / "empty.wav", np.zeros(0), sr)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....not audio")
    ids = ["good", "silent", "empty", "broken", "missing"]
    df = pd.DataFrame({"clip_id": ids, "path": [f"{i}.wav" for i in ids], "labels": "a",
                       "subset": "curated", "fold": 0})
    with pytest.raises(DataSourceError, match=r"4 of 5 clips .*max_bad_fraction=0\.5"):
        screen_clips(df, tmp_path, 0.5, progress=False)
    kept = screen_clips(df, tmp_path, 0.8, progress=False)
    assert kept["clip_id"].tolist() == ["good"]
    assert kept["duration_s"].tolist() == [1.0] and kept["sample_rate"].tolist() == [sr]
    report = pd.read_csv(tmp_path / BAD_CLIPS_NAME).set_index("clip_id")["problem"]
    assert report["silent"] == "all-silent" and report["empty"].startswith("empty")
    assert report["broken"].startswith("unreadable") and report["missing"].startswith("unread")



# ------------------------------------------------------------- stale temp directories

_ENTER_AND_STOP = """
import os, signal, sys
from audiotag.core.io import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "half.wav").write_bytes(b"x")
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print("in", flush=True)
    sys.stdin.read()  # stays in use until the test closes stdin
"""


def _enter(tmp_path: Path, out: str, how: str) -> subprocess.Popen:
    import os
    import sys
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _ENTER_AND_STOP, out, how], cwd=tmp_path,
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if how == "kill":
        proc.wait(timeout=60)
    else:
        assert proc.stdout.readline() == "in\n"
    return proc


def test_partials_of_a_killed_run_are_cleaned_but_not_ones_in_use(tmp_path, caplog):
    from audiotag.core.io import atomic_dir
    live = _enter(tmp_path, "data/raw", "wait")  # a run still in progress
    try:
        _enter(tmp_path, "data/raw", "kill")
        _enter(tmp_path, "data/features", "kill")  # another stage's: not ours to remove
        before = sorted(p.name for p in (tmp_path / "data").iterdir())
        assert len([n for n in before if n.startswith(".raw.")]) == 2
        with caplog.at_level("INFO"), atomic_dir(tmp_path / "data" / "raw") as tmp:
            (tmp / "ok").write_text("done")
        after = sorted(p.name for p in (tmp_path / "data").iterdir())
    finally:
        live.stdin.close()
        live.wait(timeout=60)
    assert len([n for n in after if n.startswith(".raw.")]) == 1  # the live one stays
    assert len([n for n in after if n.startswith(".features.")]) == 1
    assert "raw" in after and "removed stale" in caplog.text


def _screen_one(tmp_path: Path, name: str, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.DataFrame({"clip_id": [name], "path": [f"{name}.wav"], "labels": "a",
                       "subset": "curated", "fold": 0})
    kept = screen_clips(df, tmp_path, 1.0, progress=False, **kwargs)
    return kept, pd.read_csv(tmp_path / BAD_CLIPS_NAME, keep_default_na=False)


@pytest.mark.parametrize(("bad", "at"), [(np.nan, -3), (np.inf, 5), (np.nan, 0)])
@pytest.mark.parametrize("seconds", [0.5, 70.0])  # 70 s at 8 kHz: several screening blocks
def test_non_finite_samples_anywhere_exclude_the_clip(tmp_path, bad, at, seconds):
    wave = 0.1 * np.ones((int(8000 * seconds), 2), dtype=np.float32)
    wave[at, 1] = bad
    sf.write(tmp_path / "clip.wav", wave, 8000, subtype="FLOAT")
    kept, report = _screen_one(tmp_path, "clip")
    assert kept.empty
    assert report["problem"].iloc[0].startswith("non-finite")
    assert report["action"].iloc[0] == "excluded"


def test_stereo_clip_whose_channels_cancel_is_screened_as_features_hear_it(tmp_path):
    left = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    sf.write(tmp_path / "clip.wav", np.stack([left, -left], axis=1), 8000, subtype="FLOAT")
    assert float(load_audio(tmp_path / "clip.wav", 8000).abs().max()) == 0.0  # what features get
    kept, report = _screen_one(tmp_path, "clip")
    assert kept.empty and report["problem"].tolist() == ["all-silent"]


def test_truncated_wav_is_kept_with_a_warning_and_listed(tmp_path, caplog):
    sf.write(tmp_path / "full.wav", 0.1 * np.ones(8000), 8000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "clip.wav").write_bytes(data[:len(data) - 4000])  # header still says 8000
    with caplog.at_level("WARNING"):
        kept, report = _screen_one(tmp_path, "clip")
    assert kept["clip_id"].tolist() == ["clip"]
    assert kept["duration_s"].tolist() == [6000 / 8000]
    assert report[["clip_id", "action"]].values.tolist() == [["clip", "kept"]]
    assert report["problem"].iloc[0].startswith(
        "truncated: header says 8000 frames, file holds 6000")
    assert "clip.wav" in caplog.text and "truncated" in caplog.text
    # an intact file is not reported
    kept, report = _screen_one(tmp_path, "full")
    assert len(kept) == 1 and report.empty


def test_clips_shorter_than_min_seconds_are_excluded(tmp_path):
    sr = 8000
    sf.write(tmp_path / "short.wav", 0.1 * np.ones(3), sr)
    sf.write(tmp_path / "ok.wav", 0.1 * np.ones(sr // 10), sr)  # exactly 0.1 s
    df = pd.DataFrame({"clip_id": ["short", "ok"], "path": ["short.wav", "ok.wav"],
                       "labels": "a", "subset": "curated", "fold": 0})
    kept = screen_clips(df, tmp_path, 1.0, progress=False, min_seconds=0.1)
    assert kept["clip_id"].tolist() == ["ok"]
    report = pd.read_csv(tmp_path / BAD_CLIPS_NAME)
    assert report["clip_id"].tolist() == ["short"]
    assert report["problem"].iloc[0] == "too short: 0.000375 s < data.min_seconds=0.1"


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_outputs_get_the_modes_of_a_plain_open_and_mkdir(tmp_path, umask):
    # issue 33 item 12: mkstemp/mkdtemp made every output 0600/0700 whatever the umask, so
    # teammates on a shared machine could not read reports/summary.md or data/raw/
    import os

    from audiotag.core.io import atomic_dir, atomic_path, write_json
    old = os.umask(umask)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with atomic_path(tmp_path / "model.pt") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "raw") as tmp:
            (tmp / "manifest.csv").write_text("x")
    finally:
        os.umask(old)
    for name in ("m.json", "model.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert (tmp_path / "raw").stat().st_mode & 0o777 == 0o777 & ~umask
    old = os.umask(0o022)
    try:
        with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
            zf.writestr("top/x.txt", "x")
        safe_extract(tmp_path / "a.zip", tmp_path / "out")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755  # an extracted archive too
