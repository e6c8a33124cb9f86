import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from audiotag.core.errors import AudioError
from audiotag.features.audio import audio_blocks, fit_length, load_audio
from audiotag.features.config import FeaturesConfig
from audiotag.features.frontend import FrontEnd
from audiotag.features.stream import clip_frames

CLIP = torch.tensor([1.0, 2.0, 3.0])


@pytest.mark.parametrize("mode, expected", [
    ("wrap", [1, 2, 3, 1, 2, 3, 1, 2]),
    ("zeros", [1, 2, 3, 0, 0, 0, 0, 0]),
    ("reflect", [1, 2, 3, 2, 1, 2, 3, 2]),
    ("mirror", [1, 2, 3, 3, 2, 1, 1, 2]),
])
def test_pad_modes_on_a_hand_made_signal(mode, expected):
    assert fit_length(CLIP, 8, mode).tolist() == expected


def test_long_clip_is_centre_cropped():
    wave = torch.arange(10.0)
    assert fit_length(wave, 4, "wrap").tolist() == [3, 4, 5, 6]
    assert fit_length(wave, 10, "zeros").tolist() == wave.tolist()


def test_unknown_pad_mode():
    with pytest.raises(ValueError, match="pad_mode"):
        fit_length(CLIP, 5, "edge")


def test_load_audio_mixes_to_mono_and_resamples(tmp_path):
    sr = 8000
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1) * 0.5
    sf.write(tmp_path / "a.wav", stereo, sr, subtype="PCM_16")
    wave = load_audio(tmp_path / "a.wav", 16000)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1
    assert 0.2 < wave.abs().max() < 0.3  # mean of the two channels


def test_unreadable_audio_names_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not a wav file")
    with pytest.raises(AudioError, match="broken.wav"):
        load_audio(bad, 16000)


def _whole_file(path, sample_rate):
    """The reference: the whole file decoded, downmixed and resampled in one go."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    return wave if sr == sample_rate else AF.resample(wave, sr, sample_rate)


@pytest.mark.parametrize("rate", [44100, 22050, 8000, 16000])
def test_blocks_join_up_to_the_whole_file_bit_for_bit(tmp_path, rate):
    rng = np.random.default_rng(rate)
    stereo = 0.3 * rng.standard_normal((int(rate * 40.37), 2))
    sf.write(tmp_path / "a.wav", stereo, rate, subtype="PCM_16")
    # pieces of >= 10 s at 8 kHz: torch's conv1d takes another path on short inputs
    pieces = list(audio_blocks(tmp_path / "a.wav", 16000, block_seconds=12.0))
    assert len(pieces) >= 3  # really in blocks
    assert torch.equal(torch.cat(pieces), _whole_file(tmp_path / "a.wav", 16000))
    whole = list(audio_blocks(tmp_path / "a.wav", 16000, block_seconds=41.0))
    assert len(whole) == 1 and torch.equal(whole[0], load_audio(tmp_path / "a.wav", 16000))


@pytest.mark.parametrize("features", [{}, {"kind": "mfcc"}, {"kind": "logmel+chroma"},
                                      {"kind": "stft", "n_fft": 255, "hop_length": 100},
                                      {"top_db": None}, {"to_db": False},
                                      {"kind": "waveform"}])
def test_a_long_clip_in_pieces_has_the_whole_clips_features(tmp_path, features):
    # top_db floors from the loudest frame of the whole clip: here in its last second
    rate = 22050
    t = np.arange(int(rate * 11.3)) / rate
    wave = 0.01 * np.random.default_rng(0).standard_normal(len(t)) + (
        0.8 * np.sin(2 * np.pi * 700 * t) * (t > 10.3))
    sf.write(tmp_path / "a.wav", wave, rate, subtype="PCM_16")
    frontend = FrontEnd(FeaturesConfig(**features))
    with torch.no_grad():
        whole = frontend(_whole_file(tmp_path / "a.wav", 16000)[None])[0]
    pieces = list(clip_frames(tmp_path / "a.wav", frontend, block_seconds=2.5))
    assert len(pieces) >= 4
    assert torch.equal(torch.cat(pieces, dim=1), whole)


@pytest.mark.parametrize("rate, extra", [(16000, 5), (16000, 1500), (44100, 300)])
def test_a_clip_ending_just_past_a_block_still_matches(tmp_path, rate, extra):
    # a last piece of a few samples: a segment of one or two frames would take another
    # matmul path in torch (other last bits); segments are never that short
    wave = 0.1 * np.random.default_rng(extra).standard_normal(rate * 9 + extra)
    sf.write(tmp_path / "a.wav", wave, rate, subtype="PCM_16")
    frontend = FrontEnd(FeaturesConfig(kind="mfcc"))
    with torch.no_grad():
        whole = frontend(_whole_file(tmp_path / "a.wav", 16000)[None])[0]
    pieces = list(clip_frames(tmp_path / "a.wav", frontend, block_seconds=3.0))
    assert len(pieces) > 1 and min(p.shape[1] for p in pieces) > 20
    assert torch.equal(torch.cat(pieces, dim=1), whole)
