"""Config: merge order, validation at the edge with the key named, profiles."""
from datetime import datetime, timezone
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import BaseModel

from lakerec.config import (ENVIRONMENT, MODEL_NAMES, Config, ConfigError, TrainConf, default_conf_dir, load_config,
                            secret)
from tests.conftest import CONF_DIR, REPO


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


def test_the_environment_sits_between_config_files_and_set(tmp_path, monkeypatch):
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"lake:\n  root: {tmp_path}/from-file\n")
    monkeypatch.setenv("LAKEREC_LAKE_ROOT", f"{tmp_path}/from-env")
    monkeypatch.setenv("LAKEREC_FAIL_STAGE", "silver, train")
    assert load_config("test", config_files=[str(extra)], conf_dir=CONF_DIR).lake.root == f"{tmp_path}/from-env"
    cfg = load_config("test", [f"lake.root={tmp_path}/from-set"], [str(extra)], conf_dir=CONF_DIR)
    assert cfg.lake.root == f"{tmp_path}/from-set"  # --set wins over the environment
    assert cfg.drill.fail_stages == ["silver", "train"]  # a comma-separated variable becomes the list
    monkeypatch.setenv("LAKEREC_LAKE_ROOT", "")  # set but empty: unset
    assert load_config("test", conf_dir=CONF_DIR).lake.root == load_config("test", conf_dir=CONF_DIR).lake.root != ""


def test_every_environment_row_is_a_config_key_and_documented():
    doc = (REPO / "docs" / "reference" / "environment.md").read_text()
    defaults = load_config("test", conf_dir=CONF_DIR).model_dump()
    for variable, key in ENVIRONMENT.items():
        assert f"`{variable}`" in doc, variable
        if key == "conf_dir" or key.startswith("secret."):
            continue
        section, _, leaf = key.rpartition(".")
        node = defaults
        for part in section.split("."):
            node = node[part]
        assert leaf in node, key


def test_secrets_never_enter_the_config(monkeypatch):
    monkeypatch.setenv("LAKEREC_PSEUDO_KEY", "s3cret")
    cfg = load_config("test", conf_dir=CONF_DIR)
    assert secret("pseudonym_key") == "s3cret" and "s3cret" not in cfg.model_dump_json()


def test_valid_from_is_an_instant_parsed_once():
    assert load_config("test", conf_dir=CONF_DIR).etl.valid_from == datetime(1995, 1, 1, tzinfo=timezone.utc)
    naive = load_config("test", ["etl.valid_from=2020-05-01T12:00:00"], conf_dir=CONF_DIR).etl.valid_from
    assert naive == datetime(2020, 5, 1, 12, tzinfo=timezone.utc)  # no offset: UTC
    paris = load_config("test", ["etl.valid_from=2020-05-01T12:00:00+02:00"], conf_dir=CONF_DIR).etl.valid_from
    assert paris == datetime(2020, 5, 1, 10, tzinfo=timezone.utc)
    with pytest.raises(ConfigError, match="etl.valid_from"):
        load_config("test", ["etl.valid_from=last tuesday"], conf_dir=CONF_DIR)


def _defaults(model: type[BaseModel], prefix: str = "") -> dict:
    """dotted key -> the pydantic model's own default, for every field that has one (nested models walked)."""
    out = {}
    for name, field in model.model_fields.items():
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out.update(_defaults(field.annotation, f"{prefix}{name}."))
        elif isinstance(default, BaseModel):  # an optional section (input.items)
            out.update(_defaults(type(default), f"{prefix}{name}."))
        elif not field.is_required():
            out[f"{prefix}{name}"] = default
    return out


def test_base_yaml_gives_the_models_defaults():
    """Defaults live in conf/base.yaml and the models alike: they must not drift apart."""
    base = Config.model_validate({**yaml.safe_load((CONF_DIR / "base.yaml").read_text()), "profile": "base"})
    dumped = base.model_dump()
    drift = {}
    for key, default in _defaults(Config).items():
        node = dumped
        for part in key.split("."):
            node = node[part]
        if key != "profile" and node != default:
            drift[key] = (node, default)
    assert drift == {}


def test_an_id_only_data_set_has_no_catalog():
    assert load_config("test", conf_dir=CONF_DIR).item_catalog is not None  # the demo's own catalog
    assert load_config("test", ["input.items=null"], conf_dir=CONF_DIR).item_catalog is None
    assert load_config("test", ["input.events.path=/raw/events"], conf_dir=CONF_DIR).item_catalog is None
    with_items = load_config("test", ["input.events.path=/raw/e", "input.items.path=/raw/i"], conf_dir=CONF_DIR)
    assert with_items.item_catalog.path == "/raw/i"
    with pytest.raises(ConfigError, match="needs an item catalog"):
        load_config("test", ["input.items=null", "sequences.holdout.protocol=newest"], conf_dir=CONF_DIR)


def test_model_names_come_from_one_registry():
    from jobs.train import OPTIONS
    from lakerec.models import MODELS

    assert tuple(MODELS) == MODEL_NAMES
    assert set(get_args(TrainConf.model_fields["model"].annotation)) == set(MODEL_NAMES)
    (model_option,) = [o for o in OPTIONS if o.key == "train.model"]
    assert all(name in model_option.help for name in MODEL_NAMES)


def test_production_code_reads_the_environment_only_in_config():
    """Everything else may only write variables a library reads (docs/reference/environment.md lists them)."""
    others = {}
    for path in sorted((REPO / "lib").rglob("*.py")) + sorted((REPO / "jobs").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "os.environ" in line and path.name != "config.py":
                others[f"{path.relative_to(REPO)}:{n}"] = line.strip()
    reads = {where: line for where, line in others.items()
             if not line.startswith("os.environ.setdefault(") and "{**os.environ," not in line}
    assert reads == {}
    doc = (REPO / "docs" / "reference" / "environment.md").read_text()
    assert all(where.split(":")[0] in doc for where in others)


def test_the_shipped_conf_pipeline_and_space_are_found_from_any_folder(tmp_path, monkeypatch):
    from lakerec.pipeline import default_pipeline_file, load_pipeline
    from lakerec.train.tune import load_space

    monkeypatch.chdir(tmp_path)  # no conf/ or pipelines/ here
    monkeypatch.delenv("LAKEREC_CONF_DIR", raising=False)
    assert default_conf_dir() == CONF_DIR
    assert default_pipeline_file() == REPO / "pipelines" / "lakerec.yaml" and load_pipeline().stages
    cfg = load_config("test")
    assert load_space(cfg.tune.space, cfg)
    (tmp_path / "conf").mkdir()  # a folder of the user's own comes first
    (tmp_path / "conf" / "base.yaml").write_text((CONF_DIR / "base.yaml").read_text())
    assert default_conf_dir() == Path("conf")


def test_score_shortlist_defaults_to_four_times_top_n_and_never_below_it():
    cfg = load_config("test", ["score.precision=bf16"], conf_dir=CONF_DIR)
    assert cfg.score.precision == "bf16" and cfg.score.shortlist is None
    assert cfg.score.shortlist_size == 4 * cfg.score.top_n
    assert load_config("test", ["score.shortlist=7"], conf_dir=CONF_DIR).score.shortlist_size == 7
    with pytest.raises(ConfigError, match="score.shortlist"):
        load_config("test", ["score.shortlist=2", "score.top_n=3"], conf_dir=CONF_DIR)
    with pytest.raises(ConfigError, match=r"score\.precision"):
        load_config("test", ["score.precision=int4"], conf_dir=CONF_DIR)


def test_evaluate_item_chunk_must_be_positive():
    assert load_config("test", ["evaluate.item_chunk=1"], conf_dir=CONF_DIR).evaluate.item_chunk == 1
    with pytest.raises(ConfigError, match=r"evaluate\.item_chunk"):
        load_config("test", ["evaluate.item_chunk=0"], conf_dir=CONF_DIR)
