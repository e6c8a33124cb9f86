"""The embedded default dataset: deterministic synthetic audio tagging clips.

It mirrors FSDKaggle2019's layout: a small ``curated`` subset with correct labels, a
larger ``noisy`` subset whose labels are wrong in the ways web labels are (the clean labels
are kept in ``true_labels`` so label cleaning can be scored), and a ``test`` subset with
correct labels. Nothing is downloaded and no audio lives in git: :func:`generate`
renders every clip from a seed.

The noisy subset's label noise comes in kinds, each a share of the noisy clips (disjoint
clips): a true label missing, a label confused with a related event kind
(:data:`RELATED`, one direction per pair: systematic), an out-of-vocabulary sound carrying
the vocabulary label it resembles (open-set noise, :data:`LOOKALIKE`: one of the clip's
events is rendered as an event kind outside the first ``num_classes``), and a label
dropped, swapped or added at random. Its audio is also recorded differently (a domain
shift: events quieter against the background, a band-limited channel).

A clip is a coloured background noise plus 1..``max_events`` distinct sound events, each
of a different kind (:data:`EVENT_CLASSES`), at a random onset and a random SNR. Every
event kind has a characteristic time-frequency shape, but the frequency ranges overlap so
the tagging task is not trivial. Two regression targets come with every clip:
``targets_n_events`` (its number of events) and ``targets_snr_db`` (their mean SNR), for
``train.task: regression | multitask``.

Determinism: clip ``i`` of a subset is rendered from its own generator,
``numpy.random.default_rng([seed, subset_stream, i])``, so it does not depend on how many
clips the other subsets have; folds and label noise use their own streams.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import soundfile as sf
from pydantic import ConfigDict, Field, model_validator
from scipy import fft as sfft
from tqdm.auto import tqdm

from audiotag.core.params import Strict
from audiotag.data.manifest import join_labels

logger = logging.getLogger(__name__)

EVENT_MIN_SECONDS = 0.2
"""Shortest rendered event, seconds."""
EVENT_MAX_SECONDS = 2.5
"""Longest rendered event, seconds."""
_BAND_EDGE = 0.45
"""Synthesized partials stay below this fraction of the sample rate (Nyquist is 0.5)."""
_FADE_SECONDS = 0.004
_MIN_OVERLAP_SECONDS = 0.2
_PEAK_RANGE = (0.3, 0.9)

# Random streams: the first two entries of every seed key are (seed, stream). All keys
# have the same length on purpose: SeedSequence pads short keys with zeros, so
# [s, 1] and [s, 1, 0] would collide.
_CLIP_STREAMS = {"curated": 1, "noisy": 2, "test": 3}
_FOLD_STREAM = 10
_NOISE_STREAM = 11
_ID_PREFIX = {"curated": "cur", "noisy": "noi", "test": "tst"}
_CORRUPTIONS = ("drop", "swap", "add")
_OPEN_SET_STREAM = 12

Renderer = Callable[[int, np.random.Generator], np.ndarray]


# --------------------------------------------------------------------------- helpers


def _top(sr: int) -> float:
    """Highest frequency any synthesized partial may have at sample rate ``sr``."""
    return _BAND_EDGE * sr


def _freq(rng: np.random.Generator, lo: float, hi: float, sr: int) -> float:
    """Log-uniform frequency in ``[lo, hi]`` Hz, squeezed below :func:`_top` (no aliasing)."""
    top = min(hi, _top(sr))
    bottom = min(lo, top / 2)
    return float(np.exp(rng.uniform(np.log(bottom), np.log(top))))


def _n_samples(rng: np.random.Generator, sr: int, lo: float, hi: float) -> int:
    """Random event length in samples, within the documented event length range."""
    seconds = min(max(rng.uniform(lo, hi), EVENT_MIN_SECONDS), EVENT_MAX_SECONDS)
    return max(int(math.ceil(EVENT_MIN_SECONDS * sr)), int(seconds * sr))


def _time(n: int, sr: int) -> np.ndarray:
    """Sample times in seconds."""
    return np.arange(n) / sr


def _phase(freq: np.ndarray | float, n: int, sr: int) -> np.ndarray:
    """Instantaneous phase of a (possibly time-varying) frequency track, radians."""
    if np.ndim(freq) == 0:
        return 2 * np.pi * float(freq) * _time(n, sr)
    return 2 * np.pi * np.cumsum(freq) / sr


def _harmonics(phase: np.ndarray, amps: np.ndarray,
               numbers: np.ndarray | None = None) -> np.ndarray:
    """Sum of ``amps[j] * sin(numbers[j] * phase)``; harmonic numbers default to 1..k."""
    numbers = np.arange(1, len(amps) + 1) if numbers is None else numbers
    return amps @ np.sin(np.outer(numbers, phase))


def _envelope(n: int, sr: int, rng: np.random.Generator,
              attack: tuple[float, float] = (0.005, 0.08),
              release: tuple[float, float] = (0.02, 0.3)) -> np.ndarray:
    """Trapezoid envelope with random attack and release times (clipped to the length)."""
    t = np.arange(n, dtype=np.float64)
    a = max(1.0, rng.uniform(*attack) * sr)
    r = max(1.0, rng.uniform(*release) * sr)
    return np.clip(np.minimum(t / a, (n - 1 - t) / r), 0.0, 1.0)


def _fade(x: np.ndarray, sr: int) -> np.ndarray:
    """Raised-cosine fade in and out, so event edges do not click (broadband energy)."""
    m = min(len(x) // 2, max(1, int(_FADE_SECONDS * sr)))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(m) / m)
    x = x.copy()
    x[:m] *= ramp
    x[len(x) - m:] *= ramp[::-1]
    return x


def _band_filter(x: np.ndarray, sr: int, lo: float, hi: float) -> np.ndarray:
    """Zero-phase FFT band-pass with soft (raised-cosine, 1/4 octave) edges."""
    m = sfft.next_fast_len(len(x), real=True)  # awkward (prime) lengths make FFTs slow
    spec = sfft.rfft(x, n=m)
    f = np.maximum(np.fft.rfftfreq(m, 1 / sr), 1e-3)
    width = 0.25  # octaves
    up = np.clip((np.log2(f / lo) + width) / width, 0, 1)
    down = np.clip((np.log2(hi / f) + width) / width, 0, 1)
    mask = (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))
    mask[f > _top(sr) + 0.02 * sr] = 0.0  # hard stop close to Nyquist
    return sfft.irfft(spec * mask, n=m)[: len(x)]


def _sequence(n: int, sr: int, rng: np.random.Generator, unit: Callable[[], np.ndarray],
              gap: tuple[float, float]) -> np.ndarray:
    """Fill ``n`` samples with ``unit()`` segments separated by random gaps (first at 0)."""
    out = np.zeros(n)
    pos = 0
    while pos < n:
        seg = unit()[: n - pos]
        out[pos:pos + len(seg)] = seg
        pos += len(seg) + int(rng.uniform(*gap) * sr)
    return out


# ----------------------------------------------------------------------- event kinds


def _pure_tone(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A steady sine."""
    n = _n_samples(rng, sr, 0.3, 2.5)
    f = _freq(rng, 300, 3000, sr)
    return np.sin(_phase(f, n, sr) + rng.uniform(0, 2 * np.pi)) * _envelope(n, sr, rng)


def _sweep_track(sr: int, rng: np.random.Generator) -> np.ndarray:
    """An exponential upward frequency track, shared by both chirp kinds."""
    n = _n_samples(rng, sr, 0.2, 1.5)
    f0 = _freq(rng, 200, 1500, sr)
    f1 = min(f0 * rng.uniform(1.5, 4.0), _top(sr))
    return f0 * (f1 / f0) ** (np.arange(n) / n)


def _up_chirp(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A rising exponential sweep."""
    track = _sweep_track(sr, rng)
    return np.sin(_phase(track, len(track), sr)) * _envelope(len(track), sr, rng)


def _down_chirp(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A falling exponential sweep."""
    track = _sweep_track(sr, rng)[::-1]
    return np.sin(_phase(track, len(track), sr)) * _envelope(len(track), sr, rng)


def _harmonic_stack(sr: int, rng: np.random.Generator) -> np.ndarray:
    """f0 plus 4-10 harmonics with a random spectral tilt."""
    n = _n_samples(rng, sr, 0.3, 2.5)
    f0 = _freq(rng, 100, 600, sr)
    k = max(1, min(int(rng.integers(4, 11)), int(_top(sr) // f0)))
    amps = np.arange(1, k + 1) ** -rng.uniform(0.3, 1.5) * rng.uniform(0.5, 1.0, k)
    return _harmonics(_phase(f0, n, sr), amps) * _envelope(n, sr, rng)


def _noise_burst(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise, 0.3-1.2 octaves wide."""
    n = _n_samples(rng, sr, 0.2, 1.5)
    fc = _freq(rng, 300, 4000, sr)
    half = rng.uniform(0.3, 1.2) / 2
    noise = _band_filter(rng.standard_normal(n), sr, fc * 2**-half, fc * 2**half)
    return noise * _envelope(n, sr, rng, attack=(0.005, 0.05), release=(0.05, 0.4))


def _click_train(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Regular clicks (4-40 per second), each a few-ms band-limited high-frequency ping."""
    n = _n_samples(rng, sr, 0.3, 2.0)
    period = sr / rng.uniform(4, 40)
    grid = np.arange(0, n, period)
    onsets = grid + rng.normal(0, 0.02 * period, len(grid))  # slight timing jitter
    impulses = np.zeros(n)
    impulses[np.clip(onsets.astype(int), 0, n - 1)] = rng.uniform(0.8, 1.0, len(onsets))
    fk = _freq(rng, 1500, 5000, sr)
    half = rng.uniform(0.5, 1.0) / 2  # octaves; narrower bands ring longer
    return _band_filter(impulses, sr, fk * 2**-half, fk * 2**half)


def _tremolo(sr: int, rng: np.random.Generator) -> np.ndarray:
    """An amplitude-modulated tone (4-14 Hz modulation)."""
    n = _n_samples(rng, sr, 0.5, 2.5)
    t = _time(n, sr)
    depth = rng.uniform(0.6, 1.0)
    mod = 1 - depth * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 14) * t + rng.uniform(0, 6)))
    return np.sin(_phase(_freq(rng, 300, 2000, sr), n, sr)) * mod * _envelope(n, sr, rng)


def _vibrato(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A frequency-modulated tone (4-8 Hz, 2-6 % deviation) with a weak 2nd harmonic."""
    n = _n_samples(rng, sr, 0.5, 2.5)
    fc = _freq(rng, 300, 2000, sr) / 1.06  # the deviation must not push it past the top
    wobble = np.sin(2 * np.pi * rng.uniform(4, 8) * _time(n, sr))
    track = fc * (1 + rng.uniform(0.02, 0.06) * wobble)
    second = 0.3 if 2 * track.max() < _top(sr) else 0.0
    return _harmonics(_phase(track, n, sr), np.array([1.0, second])) * _envelope(n, sr, rng)


def _drum_hit(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A membrane: inharmonic damped modes with a quick downward pitch bend."""
    n = _n_samples(rng, sr, 0.2, 1.0)
    t = _time(n, sr)
    f0 = _freq(rng, 60, 300, sr) / 1.5  # room for the pitch bend
    ratios = np.array([1.0, 1.59, 2.14, 2.30, 2.65])
    keep = ratios * f0 * 1.5 < _top(sr)
    ratios = ratios[keep]
    tau = rng.uniform(0.05, 0.25) / np.sqrt(ratios)  # higher modes die faster
    amps = rng.uniform(0.3, 1.0, len(ratios)) / ratios
    phase = _phase(f0 * (1 + 0.5 * np.exp(-t / 0.02)), n, sr)
    decay = np.exp(-t[None, :] / tau[:, None])
    return (amps[:, None] * decay * np.sin(np.outer(ratios, phase))).sum(0)


def _hum(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mains-like low hum: 45-130 Hz with up to 6 harmonics, slow onset."""
    n = _n_samples(rng, sr, 1.0, 2.5)
    f0 = rng.uniform(45, 130)
    k = min(6, int(_top(sr) // f0))
    amps = np.concatenate([[1.0], rng.uniform(0.2, 1.0, k - 1)])
    env = _envelope(n, sr, rng, attack=(0.05, 0.2), release=(0.1, 0.4))
    return _harmonics(_phase(f0, n, sr), amps) * env


def _bird(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A rapid sequence of short high chirps (30-120 ms each)."""
    n = _n_samples(rng, sr, 0.4, 2.0)
    fa = _freq(rng, 2000, 6000, sr)
    fb = min(fa * rng.uniform(0.6, 1.5), _top(sr))

    def chirp() -> np.ndarray:
        m = int(rng.uniform(0.03, 0.12) * sr)
        track = fa * (fb / fa) ** (np.arange(m) / m) * rng.uniform(0.95, 1.0)
        return np.sin(_phase(track, m, sr)) * np.hanning(m)

    return _sequence(n, sr, rng, chirp, gap=(0.02, 0.1))


def _siren(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A slow periodic sweep up and down (0.4-1.5 Hz) with a weak 2nd harmonic."""
    n = _n_samples(rng, sr, 1.0, 2.5)
    fc = _freq(rng, 500, 1400, sr) / 1.4
    dev = fc * rng.uniform(0.2, 0.4)
    track = fc + dev * np.sin(2 * np.pi * rng.uniform(0.4, 1.5) * _time(n, sr) + rng.uniform(0, 6))
    second = 0.3 if 2 * track.max() < _top(sr) else 0.0
    return _harmonics(_phase(track, n, sr), np.array([1.0, second])) * _envelope(n, sr, rng)


def _rain(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Dense irregular crackle: Poisson impulses with random amplitudes, high-passed."""
    n = _n_samples(rng, sr, 0.5, 2.5)
    count = rng.poisson(rng.uniform(80, 400) * n / sr) + 1
    impulses = np.zeros(n)
    np.add.at(impulses, rng.integers(0, n, count), rng.lognormal(0.0, 0.7, count))
    out = _band_filter(impulses, sr, _freq(rng, 800, 3000, sr), _top(sr))
    return out * _envelope(n, sr, rng, attack=(0.02, 0.2), release=(0.05, 0.3))


def _buzz(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A band-limited square wave (odd harmonics, 1/k)."""
    n = _n_samples(rng, sr, 0.3, 2.5)
    f0 = _freq(rng, 80, 400, sr)
    numbers = np.arange(1, max(2, min(80, int(_top(sr) // f0) + 1)), 2)
    return _harmonics(_phase(f0, n, sr), 1.0 / numbers, numbers) * _envelope(n, sr, rng)


_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240],
                    [530, 1840, 2480], [660, 1720, 2410]], dtype=np.float64)


def _vowel(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A sung vowel: a glottal harmonic series shaped by three formant resonances."""
    n = _n_samples(rng, sr, 0.3, 2.0)
    f0 = rng.uniform(90, 260)
    formants = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.9, 1.15)
    widths = rng.uniform(80, 150, 3)
    numbers = np.arange(1, max(2, int(min(_top(sr), 4000) / (f0 * 1.01))))
    fh = numbers[:, None] * f0
    gains = (1 / (1 + ((fh - formants) / widths) ** 2)) @ np.array([1.0, 0.7, 0.4])
    amps = gains / numbers**0.5 + 0.02 / numbers  # the glottal source's own tilt
    track = f0 * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 6) * _time(n, sr)))
    env = _envelope(n, sr, rng, attack=(0.02, 0.08), release=(0.05, 0.2))
    return _harmonics(_phase(track, n, sr), amps, numbers) * env


def _dtmf(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Telephone-keypad beeps: each beep is one low-group plus one high-group tone."""
    n = _n_samples(rng, sr, 0.4, 2.0)
    low, high = (697, 770, 852, 941), (1209, 1336, 1477, 1633)

    def beep() -> np.ndarray:
        m = int(rng.uniform(0.06, 0.2) * sr)
        pair = np.array([low[rng.integers(4)], high[rng.integers(4)]], dtype=np.float64)
        return _fade(np.sin(np.outer(pair, 2 * np.pi * _time(m, sr))).sum(0), sr)

    return _sequence(n, sr, rng, beep, gap=(0.05, 0.15))


def _bell(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A struck bell: slowly decaying inharmonic partials (hum, prime, tierce, ...)."""
    n = _n_samples(rng, sr, 1.0, 2.5)
    t = _time(n, sr)
    f0 = _freq(rng, 250, 1200, sr)
    ratios = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 3.0]) * rng.uniform(0.99, 1.01, 7)
    ratios = ratios[ratios * f0 < _top(sr)]
    tau = rng.uniform(0.3, 1.2) / np.sqrt(ratios)
    amps = rng.uniform(0.3, 1.0, len(ratios))
    decay = np.exp(-t[None, :] / tau[:, None])
    return (amps[:, None] * decay * np.sin(np.outer(ratios, _phase(f0, n, sr)))).sum(0)


def _engine(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A running engine: low-passed noise pulsed at a drifting firing rate, plus its harmonics."""
    n = _n_samples(rng, sr, 1.0, 2.5)
    t = _time(n, sr)
    rate = rng.uniform(15, 60) * (1 + rng.uniform(-0.1, 0.1) * t / t[-1])
    phase = _phase(rate, n, sr)
    cutoff = _freq(rng, 200, 1200, sr)
    pulses = (0.5 + 0.5 * np.cos(phase)) ** rng.uniform(2, 6)
    noise = _band_filter(rng.standard_normal(n), sr, 30.0, cutoff)
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12
    k = max(1, min(12, int(cutoff // (rate.max()))))
    tone = _harmonics(phase, 1.0 / np.arange(1, k + 1))
    return (noise * pulses + 0.5 * tone) * _envelope(n, sr, rng, attack=(0.05, 0.3))


_RENDERERS: dict[str, Renderer] = {
    "pure_tone": _pure_tone,
    "up_chirp": _up_chirp,
    "down_chirp": _down_chirp,
    "harmonic_stack": _harmonic_stack,
    "noise_burst": _noise_burst,
    "click_train": _click_train,
    "tremolo": _tremolo,
    "vibrato": _vibrato,
    "drum_hit": _drum_hit,
    "hum": _hum,
    "bird": _bird,
    "siren": _siren,
    "rain": _rain,
    "buzz": _buzz,
    "vowel": _vowel,
    "dtmf": _dtmf,
    "bell": _bell,
    "engine": _engine,
}

EVENT_CLASSES: tuple[str, ...] = tuple(_RENDERERS)
"""Class names in class-list order; a config with ``num_classes=k`` uses the first ``k``."""

RELATED: dict[str, str] = {
    "up_chirp": "down_chirp", "tremolo": "vibrato", "hum": "harmonic_stack",
    "click_train": "drum_hit", "bird": "up_chirp", "siren": "vibrato",
}
"""Confusion noise: a clip holding the key kind is labelled with the value instead (one
direction per pair, as a metadata term maps to a neighbouring class: systematic)."""

LOOKALIKE: dict[str, str] = {
    "rain": "noise_burst", "buzz": "harmonic_stack", "vowel": "vibrato",
    "dtmf": "pure_tone", "bell": "drum_hit", "engine": "hum",
}
"""Open-set noise: an out-of-vocabulary kind -> the vocabulary label it carries (with
``num_classes`` below 12, a kind without a lookalike in the vocabulary carries a vocabulary
label drawn at random)."""

NOISE_KINDS = ("missing_rate", "confusion_rate", "open_set_rate", "random_rate")
"""The label-noise kinds of the noisy subset, each a share of its clips (disjoint clips)."""


def render_event(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Render one occurrence of event ``kind`` alone: float64, peak 1.0, mono.

    Its length is between :data:`EVENT_MIN_SECONDS` and :data:`EVENT_MAX_SECONDS`, and its
    content stays below ``0.45 * sr`` (apart from fade and filter skirts).
    """
    if kind not in _RENDERERS:
        raise ValueError(f"unknown event kind {kind!r}; known: {', '.join(EVENT_CLASSES)}")
    x = _fade(_RENDERERS[kind](sr, rng), sr)
    peak = np.max(np.abs(x))
    return x / peak if peak > 0 else x


# ---------------------------------------------------------------------------- config


class SyntheticConfig(Strict):
    """Parameters of the synthetic dataset (``params.yaml`` section ``synthetic``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_classes: int = Field(12, ge=2, le=len(EVENT_CLASSES))
    n_curated: int = Field(240, ge=1)
    n_noisy: int = Field(720, ge=0)
    n_test: int = Field(240, ge=1)
    missing_rate: float = Field(0.12, ge=0.0, le=1.0)
    confusion_rate: float = Field(0.08, ge=0.0, le=1.0)
    open_set_rate: float = Field(0.16, ge=0.0, le=1.0)
    random_rate: float = Field(0.04, ge=0.0, le=1.0)
    noisy_snr_offset_db: float = -6.0
    noisy_lowpass_hz: float | None = Field(3000.0, gt=0.0)
    sample_rate: int = Field(16000, ge=4000)
    min_seconds: float = Field(1.0, gt=0.0)
    max_seconds: float = Field(10.0, gt=0.0)
    max_events: int = Field(3, ge=1)
    snr_db_min: float = 0.0
    snr_db_max: float = 20.0
    n_folds: int = Field(5, ge=2)

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
        if self.min_seconds > self.max_seconds:
            raise ValueError(f"min_seconds={self.min_seconds} > max_seconds={self.max_seconds}")
        if self.snr_db_min > self.snr_db_max:
            raise ValueError(f"snr_db_min={self.snr_db_min} > snr_db_max={self.snr_db_max}")
        if self.max_events > self.num_classes:
            raise ValueError(f"max_events={self.max_events} > num_classes={self.num_classes}")
        rates = {key: getattr(self, key) for key in NOISE_KINDS}
        if sum(rates.values()) > 1 + 1e-9:
            raise ValueError(f"the noise kinds' shares add up to {sum(rates.values()):.3g} "
                             f"> 1 ({', '.join(f'{k}={v}' for k, v in rates.items())}); each "
                             "is a share of the noisy clips and they hit different clips")
        if self.open_set_rate > 0 and self.num_classes == len(EVENT_CLASSES):
            raise ValueError(f"open_set_rate={self.open_set_rate} needs event kinds outside "
                             f"the vocabulary: num_classes must be below {len(EVENT_CLASSES)}")
        return self


# ----------------------------------------------------------------------------- clips


def _clip_length(cfg: SyntheticConfig, rng: np.random.Generator) -> int:
    """Clip length in samples, uniform in the duration range and never outside it."""
    sr = cfg.sample_rate
    lo = math.ceil(cfg.min_seconds * sr - 1e-9)
    hi = math.floor(cfg.max_seconds * sr + 1e-9)
    n = round(rng.uniform(cfg.min_seconds, cfg.max_seconds) * sr)
    # lo > hi only when min == max falls between two samples; then the nearest is used
    return max(1, min(max(n, lo), hi) if lo <= hi else n)


def _background(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS coloured noise: spectral slope between white (0) and brown (-6 dB/oct)."""
    m = sfft.next_fast_len(n, real=True)  # awkward (prime) lengths make FFTs slow
    spec = sfft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1 / sr)
    spec *= (np.maximum(f, 20.0) / 20.0) ** (-rng.uniform(0.0, 2.0) / 2)
    spec[0] = 0.0  # no DC offset
    x = sfft.irfft(spec, n=m)[:n]
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _open_set(kinds: list[int], cfg: SyntheticConfig,
              rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Open-set noise on a clip of event ``kinds``: one event is rendered as an
    out-of-vocabulary kind and labelled with the vocabulary class it resembles. Returns
    ``(rendered, labelled)``, parallel lists of kind indices."""
    oov = int(rng.integers(cfg.num_classes, len(EVENT_CLASSES)))
    lookalike = LOOKALIKE.get(EVENT_CLASSES[oov])
    label = EVENT_CLASSES.index(lookalike) if lookalike else len(EVENT_CLASSES)
    if label >= cfg.num_classes:
        label = int(rng.integers(cfg.num_classes))
    rendered, labelled = list(kinds), list(kinds)
    j = kinds.index(label) if label in kinds else int(rng.integers(len(kinds)))
    rendered[j], labelled[j] = oov, label
    return rendered, labelled


def _render_clip(cfg: SyntheticConfig, rng: np.random.Generator, noisy: bool = False,
                 open_set: bool = False) -> tuple[np.ndarray, list[int], list[int], float]:
    """One mixed clip, the sorted class indices of the vocabulary events it holds (the
    truth), the labels it carries (the truth, or with ``open_set`` one event rendered as an
    out-of-vocabulary kind but labelled as the class it resembles) and the mean SNR (dB).
    A ``noisy`` clip is recorded as the noisy subset is (``noisy_snr_offset_db``,
    ``noisy_lowpass_hz``)."""
    sr = cfg.sample_rate
    n = _clip_length(cfg, rng)
    mix = _background(n, sr, rng)  # unit power: an event's SNR is its power in dB
    k = int(rng.integers(1, cfg.max_events + 1))
    kinds = sorted(int(c) for c in rng.choice(cfg.num_classes, size=k, replace=False))
    rendered, labelled = _open_set(kinds, cfg, rng) if open_set else (kinds, kinds)
    offset = cfg.noisy_snr_offset_db if noisy else 0.0
    snrs = []
    for c in rendered:
        event = render_event(EVENT_CLASSES[c], sr, rng)
        need = min(n, len(event), max(int(_MIN_OVERLAP_SECONDS * sr), len(event) // 2))
        onset = int(rng.integers(0, n - need + 1))
        snr = rng.uniform(cfg.snr_db_min, cfg.snr_db_max) + offset
        snrs.append(snr)
        gain = np.sqrt(10 ** (snr / 10) / np.mean(event**2))
        part = event[: n - onset]
        mix[onset:onset + len(part)] += gain * part
    if noisy and cfg.noisy_lowpass_hz is not None and cfg.noisy_lowpass_hz < sr / 2:
        mix = _band_filter(mix, sr, 1.0, cfg.noisy_lowpass_hz)  # the noisy source's channel
    mix *= rng.uniform(*_PEAK_RANGE) / np.max(np.abs(mix))
    truth = sorted(c for c in rendered if c < cfg.num_classes)
    return mix, truth, sorted(set(labelled)), float(np.mean(snrs))


# ---------------------------------------------------------------------------- labels


def _corrupt(true: list[int], num_classes: int, rng: np.random.Generator) -> list[int]:
    """A different label set: drop, swap or add one class (always changes the set)."""
    absent = [c for c in range(num_classes) if c not in true]
    kind = _CORRUPTIONS[int(rng.integers(len(_CORRUPTIONS)))]
    if kind == "drop" and len(true) < 2:
        kind = "swap"
    if not absent:  # every class present: only dropping changes the set
        kind = "drop"
    out = list(true)
    if kind in ("drop", "swap"):
        out.pop(int(rng.integers(len(out))))
    if kind in ("swap", "add"):
        out.append(int(rng.choice(absent)))
    return sorted(out)


def _folds(n: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced random folds: fold sizes differ by at most one."""
    return rng.permutation(np.arange(n) % n_folds)


# -------------------------------------------------------------------------- generate


def _clip_plan(cfg: SyntheticConfig) -> list[tuple[str, int]]:
    """``(subset, index within subset)`` of every clip, in manifest row order."""
    counts = {"curated": cfg.n_curated, "noisy": cfg.n_noisy, "test": cfg.n_test}
    return [(subset, i) for subset, count in counts.items() for i in range(count)]


def _open_set_clips(cfg: SyntheticConfig, seed: int) -> set[int]:
    """Indices (within the noisy subset) of the clips rendered with open-set noise."""
    rng = np.random.default_rng([seed, _OPEN_SET_STREAM, 0])
    count = round(cfg.open_set_rate * cfg.n_noisy)
    return set(rng.choice(cfg.n_noisy, size=count, replace=False).tolist())


def _missing(true: list[int], cfg: SyntheticConfig, rng: np.random.Generator) -> list[int]:
    out = list(true)
    out.pop(int(rng.integers(len(out))))
    return out


def _confused(true: list[int], cfg: SyntheticConfig, rng: np.random.Generator) -> list[int]:
    pairs = _confusions(true, cfg.num_classes)
    src, dst = pairs[int(rng.integers(len(pairs)))]
    return sorted([c for c in true if c != src] + [dst])


def _confusions(true: list[int], num_classes: int) -> list[tuple[int, int]]:
    """The (kind, related kind) pairs of :data:`RELATED` that can confuse a clip's labels."""
    index = {name: i for i, name in enumerate(EVENT_CLASSES[:num_classes])}
    return [(index[a], index[b]) for a, b in RELATED.items()
            if a in index and b in index and index[a] in true and index[b] not in true]


def _random(true: list[int], cfg: SyntheticConfig, rng: np.random.Generator) -> list[int]:
    return _corrupt(true, cfg.num_classes, rng)


_LABEL_NOISE = (  # params key, which clips it can hit, how it edits their labels
    ("random_rate", lambda t, nc: True, _random),
    ("missing_rate", lambda t, nc: len(t) >= 2, _missing),
    ("confusion_rate", lambda t, nc: bool(_confusions(t, nc)), _confused),
)


def _label_columns(df: pd.DataFrame, truths: list[list[int]], given: list[list[int]],
                   cfg: SyntheticConfig, seed: int, classes: list[str]) -> None:
    """Fill ``fold``, ``labels`` and ``true_labels``: the noisy clips not already carrying
    open-set noise get the other kinds, each on its share of the noisy clips drawn (seeded)
    from the clips it can hit that no other kind took (fewer when too few can, logged)."""
    labels = [list(g) for g in given]
    fold_rng = np.random.default_rng([seed, _FOLD_STREAM, 0])
    for subset in ("curated", "noisy"):
        rows = np.flatnonzero(df["subset"].to_numpy() == subset)
        df.loc[rows, "fold"] = _folds(len(rows), cfg.n_folds, fold_rng)
    noise_rng = np.random.default_rng([seed, _NOISE_STREAM, 0])
    noisy = np.flatnonzero(df["subset"].to_numpy() == "noisy")
    free = np.array([r for r in noisy if labels[r] == truths[r]], dtype=noisy.dtype)
    for key, eligible, edit in _LABEL_NOISE:
        want = round(getattr(cfg, key) * len(noisy))  # exact counts: the rates match closely
        if not want:
            continue
        can = free[[eligible(truths[r], cfg.num_classes) for r in free]]
        if len(can) < want:
            logger.warning("synthetic: %s=%s asks for %d noisy clips, %d can take it",
                           key, getattr(cfg, key), want, len(can))
        rows = sorted(noise_rng.choice(can, size=min(want, len(can)), replace=False).tolist())
        for row in rows:
            labels[row] = edit(truths[row], cfg, noise_rng)
        free = free[~np.isin(free, rows)]
    df["labels"] = [join_labels([classes[c] for c in ls]) for ls in labels]
    df["true_labels"] = [join_labels([classes[c] for c in ls]) for ls in truths]


def generate(cfg: SyntheticConfig, out_dir: Path, seed: int,
             progress: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Write ``out_dir/audio/<clip_id>.wav`` (mono, PCM_16) and return ``(manifest, classes)``.

    The manifest is not written: the caller validates it and writes it atomically. Paths
    in it are relative to ``out_dir``. The same ``seed`` and ``cfg`` give byte-identical
    files and an identical manifest.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    classes = list(EVENT_CLASSES[: cfg.num_classes])
    plan = _clip_plan(cfg)
    rows, truths, given = [], [], []
    open_set = _open_set_clips(cfg, seed)
    start = time.perf_counter()
    for subset, i in tqdm(plan, desc="synthetic", unit="clip", disable=not progress):
        mix, kinds, labelled, snr_db = _render_clip(
            cfg, np.random.default_rng([seed, _CLIP_STREAMS[subset], i]),
            noisy=subset == "noisy", open_set=subset == "noisy" and i in open_set)
        clip_id = f"{_ID_PREFIX[subset]}_{i:05d}"
        rel = f"audio/{clip_id}.wav"
        sf.write(out_dir / rel, mix, cfg.sample_rate, subtype="PCM_16", format="WAV")
        rows.append({"clip_id": clip_id, "path": rel, "labels": "", "subset": subset,
                     "fold": -1, "duration_s": len(mix) / cfg.sample_rate,
                     "sample_rate": cfg.sample_rate,
                     # regression targets (train.task: regression | multitask)
                     "targets_n_events": len(labelled), "targets_snr_db": round(snr_db, 3)})
        truths.append(kinds)
        given.append(labelled)
    df = pd.DataFrame(rows, columns=["clip_id", "path", "labels", "subset", "fold",
                                     "duration_s", "sample_rate", "targets_n_events",
                                     "targets_snr_db"])
    _label_columns(df, truths, given, cfg, seed, classes)
    df["fold"] = df["fold"].astype(int)
    logger.info("synthetic: %d clips (%d classes) in %.1f s -> %s",
                len(df), len(classes), time.perf_counter() - start, out_dir / "audio")
    return df, classes
