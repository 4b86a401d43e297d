"""Training configuration files: defaults, shipped recipes, clear errors."""

from __future__ import annotations

import pytest

from delgrad.runtime import (
    ConfigError,
    config_from_dict,
    load_config,
    resolve_config,
    shipped_configs,
)


def test_empty_config_is_the_default_recipe():
    config = config_from_dict({})
    assert config.network.hidden == [30] and config.network.delay == "synaptic"
    assert config.training.epochs == 300 and config.training.batch_size == 150


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nework": {}}, "unknown field.*nework"),
        ({"network": {"hiddn": [3]}}, r"unknown field.*hiddn.*\[network\].*valid: .*hidden"),
        ({"training": {"epochs": -1}}, "training.epochs must be > 0"),
        ({"training": {"epochs": 2.5}}, "training.epochs must be an integer"),
        ({"training": {"lr_w": "fast"}}, "training.lr_w must be a number"),
        ({"network": {"delay": "sideways"}}, "network.delay must be one of"),
        ({"network": {"share_input_delay": "yes"}}, "must be true or false"),
        ({"init": {"w_mean": [1.0, 2.0, 3.0]}}, "init.w_mean needs 1 or 2 values"),
        ({"data": {"t_early": 2.0, "t_late": 1.0}}, "t_late must be later"),
        ({"neuron": {"tau_m": 0}}, "neuron.tau_m must be > 0"),
        ({"training": {"lr_w": float("nan")}}, "must be finite"),
        ({"network": 3}, r"\[network\] must be a table"),
    ],
)
def test_invalid_fields_are_named(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[network\nhidden = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_every_shipped_config_loads():
    names = shipped_configs()
    assert {
        "yinyang_H30_W",
        "yinyang_H30_WA",
        "yinyang_H30_WD",
        "yinyang_H30_WS",
        "yinyang_H5_WS",
        "yinyang_fd2021",
    } <= set(names)
    for name in names:
        config = resolve_config(name)
        assert config.name == name


def test_recipes_match_the_published_table():
    ws = resolve_config("yinyang_H30_WS")
    assert (ws.training.lr_w, ws.training.lr_d, ws.network.delay) == (0.01, 0.003, "synaptic")
    h5 = resolve_config("yinyang_H5_WS")
    assert h5.network.hidden == [5] and (h5.training.lr_w, h5.training.lr_d) == (0.015, 0.01)
    fd = resolve_config("yinyang_fd2021")
    assert fd.neuron.tau_m == 1.0 and fd.network.bias_times == [0.9]
    assert fd.training.loss == "cross_entropy" and fd.init.w_mean == [1.5, 0.5]


def test_overrides():
    config = resolve_config("yinyang_H30_W", ["training.epochs=3", "network.hidden=[7]"])
    assert config.training.epochs == 3 and config.network.hidden == [7]
    with pytest.raises(ConfigError, match="unknown field"):
        resolve_config("yinyang_H30_W", ["training.epoch=3"])
    with pytest.raises(ConfigError, match=r"form section\.key=value"):
        resolve_config("yinyang_H30_W", ["training.epochs"])
    with pytest.raises(ConfigError, match="shipped"):
        resolve_config("no_such_recipe")


def test_config_files_that_cannot_be_read_are_config_errors(tmp_path):
    from delgrad.errors import ConfigError
    from delgrad.runtime import read_toml

    (tmp_path / "latin1.toml").write_bytes(b"name = '\xe9'\n")
    for path in (tmp_path, tmp_path / "latin1.toml"):  # a folder; not UTF-8
        with pytest.raises(ConfigError, match=r"cannot read|not valid TOML"):
            read_toml(path)


def test_overrides_make_missing_sections_and_refuse_non_sections():
    from delgrad.errors import ConfigError
    from delgrad.runtime import apply_overrides

    data = apply_overrides({"device": "d"}, ["learning.lr_scale=0.5", "learning.mode=infer"])
    assert data == {"device": "d", "learning": {"lr_scale": 0.5, "mode": "infer"}}
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"device": "d"}, ["device.x=1"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        apply_overrides({}, ["learning"])
    with pytest.raises(ConfigError, match="unknown field"):
        resolve_config("yinyang_H30_WS", ["nosuch.key=1"])
