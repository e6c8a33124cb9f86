import numpy as np
import pytest
import soundfile as sf
import torch

from audiotag.core.errors import AudioError
from audiotag.features.audio import fit_length, load_audio

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
