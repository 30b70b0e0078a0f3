"""The trained model in the MLflow registry: weights + model config + item index, never a pickled class.

A registered version is an MLflow pyfunc logged "from code" (pyfunc_entry.py): its artifacts are the
state_dict (`weights.pt`, loaded with weights_only), `config.json` (ModelConfig, naming the model) and
`item_index.parquet` (item_idx -> item_id). Loading rebuilds the model with `build_model`, so a version stays loadable
whatever the module path of the class that trained it. Where the pyfunc is served, lakerec must be installed.

Names are model-neutral (the same registered model carries SASRec, BERT4Rec or BSARec versions). Versions logged
before the rename keep loading: their artifact directory `sasrec` is read as well, and the entry file stored with
them imports `SASRecPyfunc`. A lake whose versions sit under the old default name `lakerec-sasrec` gets an error
naming the one command that moves them (check_renamed) rather than a second registered model started from v1.
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.utils import logging_utils

from lakerec import tables as T
from lakerec.evaluate.metrics import model_scores, score_users
from lakerec.tracking import PIPELINE_RUN_TAG
from lakerec.models import build_model
from lakerec.models.base import PAD, ModelConfig, SequenceEncoder
from lakerec.models.topk import NO_ITEM

ARTIFACT_DIR = "model"  # the one directory artifact holding the three files below
LEGACY_ARTIFACT_DIR = "sasrec"  # its name in versions logged before the rename
LEGACY_NAME = "lakerec-sasrec"  # the default mlflow.registered_model before the rename
WEIGHTS, CONFIG, ITEM_INDEX = "weights.pt", "config.json", "item_index.parquet"
ENTRY = "pyfunc_entry.py"  # read through importlib.resources: under spark-submit --py-files it sits inside a zip
log = logging.getLogger(__name__)
PREDICT_COLUMN = "item_ids"  # predict: a column of item-id lists in, a column of top-k item-id lists out


class RegistryError(LookupError):
    """No model version matches what was asked for."""


@contextlib.contextmanager
def _without_mlflow_prints():
    """MLflow prints "Successfully registered model ..." and "Created version ..." to stderr (its eprint, not a
    logger, so no level silences them); the train stage's own line names the version. MLflow's logger records
    still reach lakerec's handler."""
    stream = logging_utils.MLFLOW_LOGGING_STREAM
    enabled, stream.enabled = stream.enabled, False
    try:
        yield
    finally:
        stream.enabled = enabled


def log_model(model: SequenceEncoder, item_ids: Sequence[str], registered_model: str, tags: dict[str, Any] | None = None,
              top_k: int = 10) -> tuple[str, str, str]:
    """Log the model to the active run, register it and tag the version; returns (name, version, run_id).

    item_ids[i] is the item with item_idx i + 1. tags (e.g. the input table versions) go on the model version.
    """
    run = mlflow.active_run()
    if run is None:
        raise RegistryError("log_model needs an active MLflow run (the train stage's)")
    if len(item_ids) != model.config.n_items:
        raise ValueError(f"{len(item_ids)} item ids for a model over {model.config.n_items} items")
    example = pd.DataFrame({PREDICT_COLUMN: [[str(i) for i in item_ids[:3]]]})
    signature = infer_signature(example, pd.DataFrame({PREDICT_COLUMN: [[str(item_ids[0])]]}),
                                params={"k": top_k, "exclude_history": True})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, ARTIFACT_DIR)
        folder.mkdir()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS)
        (folder / CONFIG).write_text(json.dumps(model.config.to_dict()))
        pd.DataFrame({T.ITEM_IDX: np.arange(1, len(item_ids) + 1, dtype=np.int32),
                      T.ITEM_ID: [str(i) for i in item_ids]}).to_parquet(folder / ITEM_INDEX, index=False)
        entry = Path(tmp, ENTRY)
        entry.write_text(resources.files("lakerec.models").joinpath(ENTRY).read_text())
        with _without_mlflow_prints():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(entry), artifacts={ARTIFACT_DIR: str(folder)},
                registered_model_name=registered_model, signature=signature, input_example=example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                                  f"pandas=={pd.__version__}", "pyarrow"],
            )
    version = str(info.registered_model_version)
    log.info("registered %s version %s (run %s)", registered_model, version, run.info.run_id)
    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_model, version, key, str(value))
    return registered_model, version, run.info.run_id


def lineage_tags(reads: dict[str, int], pipeline_run_id: str | None) -> dict[str, str]:
    """Model-version tags: `read.<table>` = the Delta version trained on, and the pipeline run that trained it."""
    tags = {f"read.{table}": str(version) for table, version in reads.items()}
    if pipeline_run_id:
        tags[PIPELINE_RUN_TAG] = pipeline_run_id
    return tags


def resolve_version(name: str, version: str | int | None = None, pipeline_run_id: str | None = None,
                    alias: str | None = None) -> tuple[str, str]:
    """Which version to use and why: the one given ("given"); else the one the alias points to ("alias");
    else the one registered in this pipeline run ("pipeline_run"); else the latest ("latest", e.g. a pipeline
    resumed after its train stage). A version or alias that does not exist is a RegistryError naming it."""
    check_renamed(name)
    client = MlflowClient()
    try:
        if version is not None:
            return str(client.get_model_version(name, str(version)).version), "given"
        if alias is not None:
            return str(client.get_model_version_by_alias(name, alias).version), "alias"
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as e:
        wanted = f"version {version}" if version is not None else f"alias {alias!r}" if alias else "any version"
        raise RegistryError(f"registered model {name!r} has no {wanted} in {mlflow.get_tracking_uri()}: "
                            f"{e.message}") from e
    if not versions:
        raise RegistryError(f"registered model {name!r} has no version: run the train stage first")
    ours = [v for v in versions if pipeline_run_id and v.tags.get(PIPELINE_RUN_TAG) == pipeline_run_id]
    if ours:
        return str(max(int(v.version) for v in ours)), "pipeline_run"
    return str(max(int(v.version) for v in versions)), "latest"


def load_model(uri_or_name_version: str | tuple[str, str | int]) -> tuple[SequenceEncoder, dict[str, Any]]:
    """Rebuild the model (whichever train.model, eval mode) from a registered version or a run's model.

    Accepts ("name", version), "models:/name/version", "models:/name@alias" or "runs:/<run_id>/model".
    meta: item_ids (item_ids[i] has item_idx i + 1), max_len, n_items, model_name, model_version, run_id, uri and
    the version's tags (the table versions it was trained on, its pipeline run).
    """
    uri, meta = _describe(uri_or_name_version)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    model, item_ids = load_from_directory(_artifact_folder(local / "artifacts"))
    meta.update(item_ids=item_ids, max_len=model.config.max_len, n_items=model.config.n_items, uri=uri)
    return model, meta


def load_from_directory(folder: str | Path) -> tuple[SequenceEncoder, list[str]]:
    """The module and item ids from the artifact directory written by log_model."""
    folder = Path(folder)
    config = ModelConfig.from_dict(json.loads((folder / CONFIG).read_text()))
    model = build_model(config)
    model.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    index = pd.read_parquet(folder / ITEM_INDEX).sort_values(T.ITEM_IDX)
    if not np.array_equal(index[T.ITEM_IDX].to_numpy(), np.arange(1, config.n_items + 1)):
        raise RegistryError(f"{folder / ITEM_INDEX} does not cover item_idx 1..{config.n_items}")
    return model.eval(), index[T.ITEM_ID].tolist()


def _artifact_folder(artifacts: Path) -> Path:
    """The version's artifact directory: `model`, or `sasrec` in a version logged before the rename."""
    return artifacts / (ARTIFACT_DIR if (artifacts / ARTIFACT_DIR).is_dir() else LEGACY_ARTIFACT_DIR)


def check_renamed(name: str) -> None:
    """Refuse to go on under a registered name with no version while the old default name LEGACY_NAME has some:
    a lake trained before the rename would otherwise start a second model from v1 beside its history, its
    champion and warm-start parent silently left behind. The error names the command that moves them."""
    if name == LEGACY_NAME:
        return
    client = MlflowClient()
    if client.search_model_versions(f"name = '{name}'", max_results=1):
        return
    old = client.search_model_versions(f"name = '{LEGACY_NAME}'")
    if old:
        move = (f"python -c \"import mlflow; mlflow.MlflowClient('{mlflow.get_tracking_uri()}')"
                f".rename_registered_model('{LEGACY_NAME}', '{name}')\"")
        raise RegistryError(
            f"registered model {name!r} has no version, but {LEGACY_NAME!r} (lakerec's name for it before models "
            f"were named neutrally) has {len(old)}: move them, aliases included, with\n  {move}\nor keep the old "
            f"name: --set mlflow.registered_model={LEGACY_NAME}")


def _describe(ref: str | tuple[str, str | int]) -> tuple[str, dict[str, Any]]:
    client = MlflowClient()
    if isinstance(ref, tuple):
        name, version = ref
        ref = f"models:/{name}/{version}"
    if ref.startswith("runs:/"):
        run_id = ref.removeprefix("runs:/").split("/")[0]
        return ref, {"model_name": None, "model_version": None, "run_id": run_id, "tags": {}}
    if not ref.startswith("models:/"):
        raise RegistryError(f"unsupported model reference {ref!r}: use models:/name/version or runs:/id/model")
    name_part = ref.removeprefix("models:/")
    if "@" in name_part:
        name, alias = name_part.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, version = name_part.rsplit("/", 1)
        mv = client.get_model_version(name, version)
    return f"models:/{name}/{mv.version}", {"model_name": name, "model_version": str(mv.version), "run_id": mv.run_id,
                                            "tags": dict(mv.tags)}


class SequencePyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc predict: a DataFrame column `item_ids` (each row a user's history, oldest first) -> the top-k
    item ids per row (params: k, exclude_history). Unknown item ids are skipped; a row with no known item gets
    an empty list rather than arbitrary items."""

    def load_context(self, context) -> None:
        folder = context.artifacts.get(ARTIFACT_DIR) or context.artifacts[LEGACY_ARTIFACT_DIR]
        self.model, item_ids = load_from_directory(folder)
        self.item_ids = np.array([None, *item_ids], dtype=object)  # position = item_idx
        self.idx_of = {item: i + 1 for i, item in enumerate(item_ids)}

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        k = int(params.get("k", 10))
        exclude = bool(params.get("exclude_history", True))
        histories = [[self.idx_of[i] for i in map(str, row) if i in self.idx_of]
                     for row in model_input[PREDICT_COLUMN]]
        inputs = np.stack([_left_pad(h, self.model.config.max_len) for h in histories])
        excluded = [np.asarray(h if exclude else [], dtype=np.int64) for h in histories]
        n_items = self.model.config.n_items
        # the evaluator's ranking: users in batches, items in chunks (no [rows x items] block), topk's rule
        _, top = score_users(model_scores(self.model), inputs, None, excluded, n_items,
                             list_k=min(k, n_items))
        top = top.numpy()
        out = [[self.item_ids[j] for j in row if j != NO_ITEM] if h else [] for row, h in zip(top, histories)]
        return pd.DataFrame({PREDICT_COLUMN: out})


SASRecPyfunc = SequencePyfunc  # the entry file stored with versions logged before the rename imports this name


def _left_pad(history: Sequence[int], max_len: int) -> np.ndarray:
    tail = list(history)[-max_len:]
    return np.array([PAD] * (max_len - len(tail)) + tail, dtype=np.int64)
