"""Config: merge order, validation at the edge with the key named, profiles."""
import pytest

from lakerec.config import ConfigError, load_config
from tests.conftest import CONF_DIR


def test_profile_overrides_base_and_set_overrides_profile():
    cfg = load_config("test", ["train.epochs=7"], conf_dir=CONF_DIR)
    assert cfg.train.epochs == 7            # --set wins
    assert cfg.train.dim == 16              # test profile over base (64)
    assert cfg.train.lr == 0.003            # base
    assert cfg.profile == "test"


def test_config_file_merges_between_profile_and_set(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("train: {epochs: 3, dim: 8}\n")
    cfg = load_config("test", ["train.dim=12"], [str(extra)], conf_dir=CONF_DIR)
    assert (cfg.train.epochs, cfg.train.dim) == (3, 12)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"train\.epochz"):
        load_config("test", ["train.epochz=3"], conf_dir=CONF_DIR)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config("test", ["train.epochs=many"], conf_dir=CONF_DIR)


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown profile 'prod'.*local"):
        load_config("prod", conf_dir=CONF_DIR)


def test_unknown_contract_field_in_mapping():
    with pytest.raises(ConfigError, match="input.events.*userid"):
        load_config("test", ["input.events.mapping={userid: uid}"], conf_dir=CONF_DIR)


def test_malformed_override():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config("test", ["train.epochs"], conf_dir=CONF_DIR)


def test_every_profile_validates():
    for profile in ("local", "test", "cluster"):
        assert load_config(profile, conf_dir=CONF_DIR).profile == profile


def test_movielens_source_validates():
    cfg = load_config("local", config_files=[str(CONF_DIR / "sources" / "movielens.yaml")], conf_dir=CONF_DIR)
    assert cfg.input.events.sep == "\t" and cfg.input.items.sep == "|"
    assert cfg.input.events.constants == {"event_type": "rating"}
    assert not cfg.demo_input


def test_tracking_uri_defaults_inside_the_lake(tmp_path):
    cfg = load_config("test", [f"lake.root={tmp_path}/lk"], conf_dir=CONF_DIR)
    assert cfg.tracking_uri == f"sqlite:///{tmp_path}/lk/mlflow.db"
