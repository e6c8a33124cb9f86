"""A real-audio noisy tagging set built from the Free Spoken Digit Dataset (issue 31).

Each clip (1-6 s at 8 kHz) mixes 1..3 distinct spoken digits, each a real FSDD recording
placed at a random onset over a low background noise; the classes are 8 digits (``three``
and ``eight`` stay out of the vocabulary, the open-set noise). Like FSDKaggle2019 it has a
``curated`` subset (correct labels), a ``noisy`` one (label noise of the kinds below, at
most one kind per clip, and a channel shift: louder background, band-limited audio) and a ``test``
one. The test clips use FSDD's official test takes (0-4) only, curated and noisy clips the
training takes (5-49), so no recording is in both. The truth is kept beside the labels:

    <out>/audio/<subset>/<subset>_NNNN.wav
    <out>/labels.csv   fname,labels,subset,true_labels,noise,recordings

(``noise``: the kind that hit the clip; ``recordings``: the FSDD files mixed into it.)
The folder source reads it (``true_labels`` feeds ``clean.method: oracle`` and the detection
scores of ``metrics/labels.json``); the script prints the params.yaml settings that use it
and how many clips each noise kind hit. Same seed, same bytes.

    python benchmarks/fsdd_noisy.py --out /tmp/fsdd-noisy
    python benchmarks/fsdd_noisy.py --out /tmp/fsdd-noisy --seed 1 --open-set 0 --random 0.1
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shutil
import sys
import tarfile
import time
import wave
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.signal import butter, sosfilt

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "datasets" / "fsdd" / "free-spoken-digit-dataset-1.0.10.tar.gz"
SAMPLE_RATE = 8000  # FSDD's rate: the set is written at it (features resample)
TEST_TAKES = 5  # FSDD's official test set: takes 0-4 of every speaker and digit
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
OUT_OF_VOCABULARY = ("three", "eight")  # heard in open-set clips, never a class
VOCABULARY = tuple(d for d in DIGITS if d not in OUT_OF_VOCABULARY)
# Confusion noise swaps a label for the digit it is most easily misheard as, in pairs that
# share their most audible part (every class has one partner):
#   five / nine: the same diphthong /aɪ/ is nearly the whole word;
#   six / seven: the onset /s/ then a short front vowel (/ɪ/, /ɛ/);
#   zero / two: a coronal onset (/z/, /t/) and a final rounded back vowel (/oʊ/, /uː/);
#   one / four: a labial onset (/w/, /f/) and one back-vowel syllable.
RELATED = {"five": "nine", "six": "seven", "zero": "two", "one": "four"}
RELATED |= {b: a for a, b in RELATED.items()}
NOISE_KINDS = ("missing", "confusion", "open_set", "random")
DEFAULTS: dict[str, Any] = {  # the synthetic set's sizes and the lead's noise rates
    "n_curated": 240, "n_noisy": 720, "n_test": 240, "min_seconds": 1.0, "max_seconds": 6.0,
    "max_digits": 3, "snr_db_min": 0.0, "snr_db_max": 20.0,
    "missing": 0.12, "confusion": 0.08, "open_set": 0.16, "random": 0.04,
    "noisy_snr_offset_db": -6.0, "noisy_lowpass_hz": 2500.0,
}
HELP = {
    "n_curated": "clips with correct labels (train + validation)",
    "n_noisy": "clips with label noise and the channel shift (train only)",
    "n_test": "clips with correct labels from FSDD's test takes",
    "min_seconds": "shortest clip (s)",
    "max_seconds": "longest clip (s)",
    "max_digits": "each clip mixes 1..max_digits distinct digits",
    "snr_db_min": "each digit's level over the background, lower bound (dB)",
    "snr_db_max": "upper bound (dB)",
    "missing": "share of noisy clips with a true label dropped (clips with >= 2 labels only)",
    "confusion": "share of noisy clips with a label replaced by its related digit",
    "open_set": "share of noisy clips where one labelled digit is heard as three or eight",
    "random": "share of noisy clips with a label dropped, swapped or added at random",
    "noisy_snr_offset_db": "added to the noisy clips' SNR (negative: louder background)",
    "noisy_lowpass_hz": "noisy clips pass a low-pass channel at this frequency (0: none)",
}
_NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav$")
_SUBSETS = ("curated", "noisy", "test")
_STREAMS = {"plan": 1, "noise": 2, "audio": 3}


class BuildError(ValueError):
    """Bad input (archive, folder, settings): one line, exit status 2."""


@dataclass(frozen=True)
class Clip:
    """One clip of the set: what is heard, what it is labelled, what is true."""

    name: str                    # audio/<name>.wav
    subset: str
    samples: int
    heard: tuple[str, ...]       # the digits spoken (an open-set one out of vocabulary)
    labels: tuple[str, ...]
    truth: tuple[str, ...]       # the vocabulary digits heard
    noise: str = ""              # the kind that hit it (noisy clips only)
    recordings: tuple[str, ...] = field(default=())


def plan_clips(rng: np.random.Generator, sizes: dict[str, int], min_seconds: float,
               max_seconds: float, max_digits: int) -> list[Clip]:
    """Clips of correct labels: 1..max_digits distinct vocabulary digits each."""
    clips = []
    for subset in _SUBSETS:
        for i in range(sizes[subset]):
            k = int(rng.integers(1, max_digits + 1))
            digits = tuple(VOCABULARY[j] for j in rng.choice(len(VOCABULARY), k, replace=False))
            seconds = rng.uniform(min_seconds, max_seconds)
            clips.append(Clip(f"{subset}/{subset}_{i:04d}", subset,
                              int(round(seconds * SAMPLE_RATE)), digits, digits, digits))
    return clips


def _missing(clip: Clip, rng: np.random.Generator) -> Clip | None:
    if len(clip.labels) < 2:
        return None
    drop = clip.labels[int(rng.integers(len(clip.labels)))]
    return replace(clip, labels=tuple(d for d in clip.labels if d != drop))


def _confusion(clip: Clip, rng: np.random.Generator) -> Clip | None:
    options = [d for d in clip.labels if RELATED[d] not in clip.labels]
    if not options:
        return None
    old = options[int(rng.integers(len(options)))]
    return replace(clip, labels=tuple(RELATED[old] if d == old else d for d in clip.labels))


def _open_set(clip: Clip, rng: np.random.Generator) -> Clip:
    """One labelled digit is heard as an out-of-vocabulary one: label kept, truth lacks it."""
    i = int(rng.integers(len(clip.heard)))
    other = OUT_OF_VOCABULARY[int(rng.integers(len(OUT_OF_VOCABULARY)))]
    heard = clip.heard[:i] + (other,) + clip.heard[i + 1:]
    return replace(clip, heard=heard, truth=tuple(d for d in clip.truth if d != clip.heard[i]))


def _random(clip: Clip, rng: np.random.Generator) -> Clip:
    """A label dropped (when another stays), swapped for or joined by a uniform other class."""
    others = [d for d in VOCABULARY if d not in clip.labels]
    ops = (["drop"] if len(clip.labels) > 1 else []) + ["swap", "add"]
    op = ops[int(rng.integers(len(ops)))]
    if op == "add":
        return replace(clip, labels=clip.labels + (others[int(rng.integers(len(others)))],))
    i = int(rng.integers(len(clip.labels)))
    new = () if op == "drop" else (others[int(rng.integers(len(others)))],)
    return replace(clip, labels=clip.labels[:i] + new + clip.labels[i + 1:])


_CORRUPT = {"missing": _missing, "confusion": _confusion, "open_set": _open_set,
            "random": _random}


def corrupt(clips: list[Clip], rates: dict[str, float],
            rng: np.random.Generator) -> tuple[list[Clip], dict[str, int]]:
    """Each noise kind hits ``round(rate * noisy clips)`` noisy clips (fewer when too few
    can take it: missing needs 2 labels, confusion a label whose partner is absent); the
    kinds hit disjoint clips, drawn in the order of :data:`NOISE_KINDS`."""
    noisy = [i for i, c in enumerate(clips) if c.subset == "noisy"]
    order = [noisy[j] for j in rng.permutation(len(noisy))]
    out, hits, used = list(clips), {}, set()
    for kind in NOISE_KINDS:
        want, hits[kind] = int(round(rates[kind] * len(noisy))), 0
        for i in order:
            if hits[kind] == want:
                break
            if i in used:
                continue
            changed = _CORRUPT[kind](clips[i], rng)
            if changed is not None:
                out[i] = replace(changed, noise=kind)
                used.add(i)
                hits[kind] += 1
    return out, hits


def read_recordings(archive: Path) -> dict[tuple[str, str, int], np.ndarray]:
    """``(digit name, speaker, take) -> float64 samples`` of every FSDD recording."""
    out = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            match = _NAME.search(member.name)
            if not (member.isfile() and "recordings/" in member.name and match):
                continue
            with wave.open(io.BytesIO(tar.extractfile(member).read())) as w:
                if (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (SAMPLE_RATE, 2, 1):
                    raise BuildError(f"{archive}: {member.name}: not 8 kHz 16-bit mono")
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            out[DIGITS[int(match[1])], match[2], int(match[3])] = pcm / 32768.0
    if not out:
        raise BuildError(f"{archive}: no recordings/*.wav in it (an FSDD archive?)")
    return out


def pick_recordings(clips: list[Clip], keys: list[tuple[str, str, int]],
                    rng: np.random.Generator) -> list[Clip]:
    """Each heard digit gets a recording: test clips from the test takes, the others from
    the training takes."""
    pools: dict[tuple[str, bool], list[tuple[str, str, int]]] = {}
    for key in sorted(keys):
        pools.setdefault((key[0], key[2] < TEST_TAKES), []).append(key)
    out = []
    for clip in clips:
        names = []
        for digit in clip.heard:
            pool = pools.get((digit, clip.subset == "test"))
            if not pool:
                raise BuildError(f"the archive has no {clip.subset} recording of {digit}")
            digit_, speaker, take = pool[int(rng.integers(len(pool)))]
            names.append(f"{DIGITS.index(digit_)}_{speaker}_{take}")
        out.append(replace(clip, recordings=tuple(names)))
    return out


def render(clip: Clip, recordings: dict[str, np.ndarray], rng: np.random.Generator,
           settings: dict[str, Any]) -> np.ndarray:
    """The clip's int16 samples: Gaussian background noise at -46 dBFS and each recording at
    a random onset and its own SNR over it (its RMS over the noise's); noisy clips get the
    SNR offset and the low-pass channel."""
    noisy = clip.subset == "noisy"
    offset = settings["noisy_snr_offset_db"] if noisy else 0.0
    noise_rms = 0.005
    mix = rng.normal(0.0, noise_rms, clip.samples)
    for name in clip.recordings:
        sound = recordings[name][:clip.samples]
        snr = rng.uniform(settings["snr_db_min"], settings["snr_db_max"]) + offset
        gain = noise_rms * 10 ** (snr / 20) / max(np.sqrt(np.mean(sound**2)), 1e-9)
        start = int(rng.integers(clip.samples - len(sound) + 1))
        mix[start:start + len(sound)] += gain * sound
    if noisy and settings["noisy_lowpass_hz"]:
        mix = sosfilt(butter(6, settings["noisy_lowpass_hz"], fs=SAMPLE_RATE, output="sos"), mix)
    peak = np.max(np.abs(mix))
    if peak > 0.99:  # a loud mix is scaled down, never clipped
        mix *= 0.99 / peak
    return np.round(mix * 32767).astype("<i2")


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def _write_csv(path: Path, clips: list[Clip]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["fname", "labels", "subset", "true_labels", "noise", "recordings"])
        for c in clips:
            out.writerow([f"{c.name}.wav", ",".join(c.labels), c.subset, ",".join(c.truth),
                          c.noise, ";".join(c.recordings)])


def overrides(out_dir: Path) -> dict[str, Any]:
    """The params.yaml settings (nested groups, merged over params.yaml) that train on the
    set in ``out_dir``."""
    out_dir = Path(out_dir).resolve()
    return {
        "data": {"dataset": "folder", "inputs": {"fsdd_noisy": str(out_dir)},
                 "folder": {"audio_dir": str(out_dir / "audio"),
                            "csv": str(out_dir / "labels.csv"), "classes": list(VOCABULARY)}},
        # 8 kHz audio has nothing above 4 kHz: mel bands up to 8 kHz would be empty
        "features": {"fmax": SAMPLE_RATE / 2},
    }


def _prepare(out_dir: Path) -> None:
    """An empty or earlier output folder (its audio/ is replaced); anything else is refused."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "labels.csv").is_file():
        raise BuildError(f"--out {out_dir}: not empty and not an earlier fsdd_noisy set")
    shutil.rmtree(out_dir / "audio", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _check(s: dict[str, Any]) -> None:
    if not 0 < s["min_seconds"] <= s["max_seconds"] or not 1 <= s["max_digits"] <= 3:
        raise BuildError("need 0 < min_seconds <= max_seconds and 1 <= max_digits <= 3")
    bad = [k for k in NOISE_KINDS if not 0 <= s[k] <= 1]
    bad += [f"n_{subset}" for subset in _SUBSETS if s[f"n_{subset}"] < 0]
    if bad:
        raise BuildError(f"{bad[0]}: {s[bad[0]]} (noise rates lie in [0, 1], sizes >= 0)")
    if s["noisy_lowpass_hz"] < 0 or s["noisy_lowpass_hz"] >= SAMPLE_RATE / 2:
        raise BuildError(f"noisy_lowpass_hz: {s['noisy_lowpass_hz']} (0 or below "
                         f"{SAMPLE_RATE // 2} Hz)")


def build_set(out_dir: Path, seed: int, archive: Path = ARCHIVE,
              **settings: Any) -> tuple[list[Clip], dict[str, int]]:
    """Write the set into ``out_dir``; returns its clips and the clips each noise kind hit.
    ``settings``: any of :data:`DEFAULTS` (the rest keep their defaults)."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise BuildError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    _check(s)
    if not Path(archive).is_file():
        raise BuildError(f"archive {archive}: no such file")
    recordings = read_recordings(Path(archive))
    sizes = {subset: s[f"n_{subset}"] for subset in _SUBSETS}
    clips = plan_clips(np.random.default_rng([seed, _STREAMS["plan"]]), sizes,
                       s["min_seconds"], s["max_seconds"], s["max_digits"])
    clips, hits = corrupt(clips, s, np.random.default_rng([seed, _STREAMS["noise"]]))
    clips = pick_recordings(clips, list(recordings), np.random.default_rng(
        [seed, _STREAMS["audio"]]))
    by_name = {f"{DIGITS.index(d)}_{sp}_{t}": x for (d, sp, t), x in recordings.items()}
    out_dir = Path(out_dir)
    _prepare(out_dir)
    for i, clip in enumerate(clips):  # one stream per clip: a clip's audio stands alone
        rng = np.random.default_rng([seed, _STREAMS["audio"], i])
        _write_wav(out_dir / "audio" / f"{clip.name}.wav", render(clip, by_name, rng, s))
    _write_csv(out_dir / "labels.csv", clips)
    return clips, hits


def build(out_dir: Path, seed: int, **kinds: Any) -> dict[str, Any]:
    """Write the set into ``out_dir`` (``kinds``: noise rates and any other setting of
    :data:`DEFAULTS`, plus ``archive``); returns the params overrides that use it."""
    build_set(out_dir, seed, **kinds)
    return overrides(out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help="the FSDD tarball")
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value,
                            help=f"{HELP[key]} (default {value})")
    args = vars(parser.parse_args())
    out, seed, archive = args.pop("out"), args.pop("seed"), args.pop("archive")
    start = time.perf_counter()
    try:
        clips, hits = build_set(out, seed, archive, **args)
    except (BuildError, OSError, tarfile.TarError) as err:
        print(f"fsdd_noisy: {err}", file=sys.stderr)
        sys.exit(2)
    subsets = Counter(c.subset for c in clips)
    n_noisy = subsets["noisy"]
    print(f"{len(clips)} clips ({', '.join(f'{subsets[s]} {s}' for s in _SUBSETS)}) in {out} "
          f"in {time.perf_counter() - start:.1f} s")
    for kind in NOISE_KINDS:
        print(f"  {kind:10s} {hits[kind]:4d} noisy clips ({hits[kind] / max(n_noisy, 1):.3f}; "
              f"asked {args[kind]})")
    print("\nparams.yaml settings that use it (merge over params.yaml; JSON:"
          f" {json.dumps(overrides(out))}):\n")
    print(yaml.safe_dump(overrides(out), sort_keys=False), end="")


if __name__ == "__main__":
    main()
