"""Registry round trip on a real local MLflow store (sqlite + artifacts in tmp): log, register, load, predict."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from lakerec import tracking
from lakerec.models.registry import (LEGACY_NAME, RegistryError, check_renamed, lineage_tags, load_model, log_model,
                                     resolve_version)
from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.models import build_model
from lakerec.models.base import ModelConfig
from lakerec.models.bert4rec import BERT4Rec
from lakerec.models.bsarec import BSARec
from lakerec.train.losses import full_softmax_ce
from tests.data.helpers import lake_run, own_mlflow_store

ITEMS = [f"item-{i}" for i in range(1, 13)]  # item_idx i + 1


@pytest.fixture
def store(make_cfg):
    with own_mlflow_store():  # each test its own store, none left behind for later tests
        cfg = make_cfg()
        tracking.setup(cfg)
        yield cfg


def trained_model() -> SASRec:
    torch.manual_seed(3)
    model = SASRec(SASRecConfig(n_items=len(ITEMS), max_len=5, dim=8, layers=1, heads=2, dropout=0.0))
    inputs = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    for _ in range(40):  # successor of i is i + 1
        opt.zero_grad()
        hidden, y = model.training_pairs(inputs, inputs + 1)
        full_softmax_ce(hidden, model.item_vectors(), y).backward()
        opt.step()
    return model.eval()


def test_log_register_load_and_score_the_same(store):
    model = trained_model()
    inputs = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    with torch.no_grad():
        before = model.user_vectors(inputs) @ model.item_vectors().T
    with lake_run(store) as run:
        name, version, run_id = log_model(model, ITEMS, store.mlflow.registered_model,
                                          tags=lineage_tags({"silver.sequences": 4}, "pipe-1"))
    assert (name, run_id) == (store.mlflow.registered_model, run.info.run_id)

    for ref in [(name, version), f"models:/{name}/{version}"]:
        loaded, meta = load_model(ref)
        assert not loaded.training
        with torch.no_grad():
            after = loaded.user_vectors(inputs) @ loaded.item_vectors().T
        assert torch.equal(before, after)
        assert meta["item_ids"] == ITEMS and meta["max_len"] == 5
        assert (meta["model_name"], meta["model_version"], meta["run_id"]) == (name, version, run_id)
        assert meta["tags"]["read.silver.sequences"] == "4"

    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    assert versions[0].tags[tracking.PIPELINE_RUN_TAG] == "pipe-1"


def test_pyfunc_predict_returns_top_k_item_ids(store):
    model = trained_model()
    with lake_run(store):
        name, version, _ = log_model(model, ITEMS, store.mlflow.registered_model)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    history = ["item-1", "item-2", "item-3"]
    out = pyfunc.predict(pd.DataFrame({"item_ids": [history, ["unknown-item"]]}), params={"k": 3})
    top = list(out["item_ids"][0])
    assert len(top) == 3 and top[0] == "item-4"  # learned successor, history excluded
    assert not set(top) & set(history)
    assert list(out["item_ids"][1]) == []  # nothing known about this user: no made-up list
    # the same answer as the library path
    loaded, _ = load_model((name, version))
    with torch.no_grad():
        scores = loaded.user_vectors(torch.tensor([[0, 0, 1, 2, 3]])) @ loaded.item_vectors().T
    scores[0, [0, 1, 2, 3]] = float("-inf")
    assert top == [ITEMS[i - 1] for i in torch.topk(scores[0], 3).indices.tolist()]
    keep_history = pyfunc.predict(pd.DataFrame({"item_ids": [history]}), params={"k": 12, "exclude_history": False})
    assert len(keep_history["item_ids"][0]) == 12
    short = pyfunc.predict(pd.DataFrame({"item_ids": [history]}), params={"k": 20})  # the top-k rule's short list
    assert sorted(short["item_ids"][0]) == sorted(set(ITEMS) - set(history))  # every item left, none made up


def test_resolve_version_prefers_this_pipeline_run_then_latest(store):
    name = store.mlflow.registered_model
    with pytest.raises(RegistryError, match="no version"):
        resolve_version(name)
    model = trained_model()
    with lake_run(store):
        log_model(model, ITEMS, name, tags=lineage_tags({}, "pipe-a"))
    with lake_run(store):
        log_model(model, ITEMS, name, tags=lineage_tags({}, "pipe-b"))
    assert resolve_version(name, pipeline_run_id="pipe-a") == ("1", "pipeline_run")
    assert resolve_version(name, pipeline_run_id="pipe-resumed") == ("2", "latest")
    assert resolve_version(name, version=1) == ("1", "given")


def test_log_model_refuses_a_mismatched_item_list(store):
    with lake_run(store), pytest.raises(ValueError, match="item ids"):
        log_model(trained_model(), ITEMS[:-1], store.mlflow.registered_model)
    with pytest.raises(RegistryError, match="active MLflow run"):
        log_model(trained_model(), ITEMS, store.mlflow.registered_model)
    assert np.isfinite(trained_model().item_vectors().detach().numpy()).all()


@pytest.mark.parametrize("name, cls", [("bert4rec", BERT4Rec), ("bsarec", BSARec)])
def test_a_version_loads_back_as_the_model_that_trained(store, name, cls):
    torch.manual_seed(4)
    model = build_model(ModelConfig(n_items=len(ITEMS), max_len=5, dim=8, layers=1, heads=2, name=name,
                                    bsarec_alpha=0.4, bsarec_window=2)).eval()
    inputs = torch.tensor([[0, 0, 1, 2, 3]])
    with lake_run(store):
        registered, version, _ = log_model(model, ITEMS, store.mlflow.registered_model)
    loaded, meta = load_model((registered, version))
    assert isinstance(loaded, cls) and meta["n_items"] == len(ITEMS) and loaded.config == model.config
    with torch.no_grad():
        expected = model.user_vectors(inputs) @ model.item_vectors().T
        assert torch.equal(loaded.user_vectors(inputs) @ loaded.item_vectors().T, expected)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{registered}/{version}")  # the serving path rebuilds it too
    top = list(pyfunc.predict(pd.DataFrame({"item_ids": [["item-1", "item-2", "item-3"]]}), params={"k": 2})
               ["item_ids"][0])
    expected[0, [0, 1, 2, 3]] = float("-inf")
    assert top == [ITEMS[i - 1] for i in torch.topk(expected[0], 2).indices.tolist()]


LEGACY_ENTRY = """import mlflow

from lakerec.models.registry import SASRecPyfunc

mlflow.models.set_model(SASRecPyfunc())
"""  # the entry file versions logged before the rename carry


def log_legacy_version(store, model, tmp: Path) -> str:
    """A version as lakerec logged it before the rename: artifact dir `sasrec`, the old entry file, registered as
    lakerec-sasrec (the files and layout of the old registry.log_model)."""
    folder = tmp / "sasrec"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
    pd.DataFrame({"item_idx": np.arange(1, len(ITEMS) + 1, dtype=np.int32), "item_id": ITEMS}).to_parquet(
        folder / "item_index.parquet", index=False)
    (tmp / "pyfunc_entry.py").write_text(LEGACY_ENTRY)
    signature = infer_signature(pd.DataFrame({"item_ids": [ITEMS[:3]]}), pd.DataFrame({"item_ids": [ITEMS[:1]]}),
                                params={"k": 10, "exclude_history": True})
    with lake_run(store):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(tmp / "pyfunc_entry.py"),
                                       artifacts={"sasrec": str(folder)}, registered_model_name=LEGACY_NAME,
                                       signature=signature)
    return str(info.registered_model_version)


def test_a_version_logged_before_the_rename_loads_and_serves(store, tmp_path):
    model = trained_model()
    version = log_legacy_version(store, model, tmp_path)
    loaded, meta = load_model((LEGACY_NAME, version))
    inputs = torch.tensor([[0, 0, 1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(loaded.user_vectors(inputs), model.user_vectors(inputs))
    assert meta["item_ids"] == ITEMS
    pyfunc = mlflow.pyfunc.load_model(f"models:/{LEGACY_NAME}/{version}")
    assert list(pyfunc.predict(pd.DataFrame({"item_ids": [["item-1", "item-2", "item-3"]]}),
                               params={"k": 1})["item_ids"][0]) == ["item-4"]


@pytest.mark.slow
def test_the_old_registered_name_gets_the_command_that_moves_it_and_the_command_works(store, tmp_path):
    name = store.mlflow.registered_model
    assert name != LEGACY_NAME  # the default is model-neutral now
    version = log_legacy_version(store, trained_model(), tmp_path)
    MlflowClient().set_registered_model_alias(LEGACY_NAME, "champion", version)
    with pytest.raises(RegistryError, match=f"{LEGACY_NAME}.* has 1") as caught:
        resolve_version(name, alias="champion")
    command = next(line.strip() for line in str(caught.value).splitlines() if line.strip().startswith("python -c"))
    argv = shlex.split(command)
    subprocess.run([sys.executable, *argv[1:]], check=True)  # exactly what the message tells a user to run
    check_renamed(name)  # nothing left to move
    assert resolve_version(name, alias="champion") == (version, "alias")
    loaded, meta = load_model((name, version))  # the old artifact layout, under the new name
    assert meta["item_ids"] == ITEMS and meta["model_name"] == name
