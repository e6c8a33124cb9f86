import pytest
import yaml

from audiotag.core.config import (
    DataChecksConfig,
    FeaturesConfig,
    ParamsError,
    parse_group,
    parse_model_params,
    parse_seed,
    parse_train,
    read_params,
)
from audiotag.data.sources import parse_data, parse_data_checks


def _write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_are_valid(repo_root):
    raw = read_params(repo_root / "params.yaml")
    assert parse_seed(raw) == raw["seed"]
    cfg = parse_train(raw)
    assert len(cfg.models) >= 3
    for name in cfg.models:
        parse_model_params(raw, name)
    name, data_cfg = parse_data(raw)
    assert name == "synthetic" and data_cfg.noise_rate == pytest.approx(0.3)
    assert parse_data_checks(raw) == DataChecksConfig()  # params.yaml shows the defaults
    parse_group(raw, "features", FeaturesConfig)


def test_negative_learning_rate_names_the_key(tmp_path):
    raw = read_params(_write(tmp_path, "train: {models: [cnn2d], lr: -0.1}"))
    with pytest.raises(ParamsError, match=r"train\.lr: .*greater than 0.*-0\.1"):
        parse_train(raw)


def test_misspelt_key_names_the_key(tmp_path):
    raw = read_params(_write(tmp_path, "train: {models: [cnn2d], learning_rate: 0.1}"))
    with pytest.raises(ParamsError, match=r"train\.learning_rate: Extra inputs"):
        parse_train(raw)


def test_unknown_model_names_the_key(tmp_path):
    raw = read_params(_write(tmp_path, "train: {models: [cnn2d, resnet9000]}"))
    with pytest.raises(ParamsError, match=r"train\.models\[1\]: unknown model 'resnet9000'"):
        parse_train(raw)


def test_misspelt_model_setting_names_the_key(tmp_path):
    raw = read_params(_write(tmp_path, "models: {cnn2d: {chanels: [8]}}"))
    with pytest.raises(ParamsError, match=r"models\.cnn2d\.chanels"):
        parse_model_params(raw, "cnn2d")
    raw = read_params(_write(tmp_path, "models: {cnn2dd: {channels: [8]}}"))
    with pytest.raises(ParamsError, match=r"models\.cnn2dd: unknown model"):
        parse_model_params(raw, "cnn2d")


def test_unknown_group_and_source(tmp_path):
    with pytest.raises(ParamsError, match="unknown group 'trian'"):
        read_params(_write(tmp_path, "trian: {lr: 1}"))
    raw = read_params(_write(tmp_path, "data: {dataset: nope}"))
    with pytest.raises(ParamsError, match=r"data\.dataset: unknown source 'nope'"):
        parse_data(raw)
    raw = read_params(_write(tmp_path, "data: {dataset: synthetic, synthetc: {}}"))
    with pytest.raises(ParamsError, match=r"data\.synthetc: not a known source"):
        parse_data(raw)
    raw = read_params(_write(tmp_path, "data: {synthetic: {noise_rate: 2}}"))
    with pytest.raises(ParamsError, match=r"data\.synthetic\.noise_rate"):
        parse_data(raw)


def test_feature_band_is_checked(tmp_path):
    raw = read_params(_write(tmp_path, "features: {sample_rate: 16000, fmax: 9000}"))
    with pytest.raises(ParamsError, match="features: .*fmax"):
        parse_group(raw, "features", FeaturesConfig)
    raw = read_params(_write(tmp_path, "features: {pad_mode: edge}"))
    with pytest.raises(ParamsError, match=r"features\.pad_mode"):
        parse_group(raw, "features", FeaturesConfig)


def test_bad_yaml_and_seed(tmp_path):
    with pytest.raises(ParamsError, match="not valid YAML"):
        read_params(_write(tmp_path, "train: [unclosed"))
    with pytest.raises(ParamsError, match="seed"):
        parse_seed(yaml.safe_load("seed: -3"))
    with pytest.raises(ParamsError, match="no such file"):
        read_params(tmp_path / "missing.yaml")
