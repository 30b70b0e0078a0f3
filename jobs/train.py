"""silver.train_windows (its snapshot files, through Petastorm) + silver.sequences (validation users) +
silver.item_index -> the train.model Transformer trained on cfg.train.ranks Horovod ranks with per-epoch
validation and early stopping, checkpointed every epoch, its best epoch logged and registered in MLflow as
cfg.mlflow.registered_model. With train.text.enabled the items are text-aware: silver.item_embeddings
(text.encoder's rows) go to every rank and into the registered model."""
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from jobs.common import JobOption, job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult, log_params
from lakerec.data.feed import petastorm_urls
from lakerec.data.sequences import SEQUENCES_VERSION, SequenceInputError, item_ids_in_order
from lakerec.logs import progress_enabled
from lakerec.models import build_model, model_config
from lakerec.models.registry import lineage_tags, log_model
from lakerec.text.embeddings import embedding_matrix, read_item_embeddings
from lakerec.train.curves import plot_learning_curves
from lakerec.train.runner import train_distributed

log = logging.getLogger("lakerec")

OPTIONS = [JobOption("--resume", "train.resume", "Continue the last checkpoint of this run (same conf and table "
                     "versions) instead of starting over.", is_flag=True)]
CURVES = "learning_curves.png"


@dataclass
class TrainingInputs:
    """What training reads from the lake (also each `lakerec tune` trial)."""

    item_ids: list[str]
    train_urls: list[str]
    valid_urls: list[str]
    text: np.ndarray | None  # [n_items + 1, text_dim] when text-aware
    versions: dict[str, int]  # the table versions read


def training_inputs(ctx: StageContext, text_aware: bool) -> TrainingInputs:
    item_ids = item_ids_in_order(ctx.lake.read(T.SILVER_ITEM_INDEX))
    sequences_version = ctx.lake.version(T.SILVER_SEQUENCES)
    windows_version = ctx.lake.version(T.SILVER_TRAIN_WINDOWS)
    check_lineage(ctx, windows_version, sequences_version)
    text = item_text_matrix(ctx, item_ids) if text_aware else None
    versions = {T.SILVER_TRAIN_WINDOWS: windows_version, T.SILVER_SEQUENCES: sequences_version}
    if text is not None:
        versions[T.SILVER_ITEM_EMBEDDINGS] = ctx.lake.reads[T.SILVER_ITEM_EMBEDDINGS]
    return TrainingInputs(item_ids, petastorm_urls(ctx.lake.files(T.SILVER_TRAIN_WINDOWS, windows_version)),
                          petastorm_urls(ctx.lake.files(T.SILVER_SEQUENCES, sequences_version)), text, versions)


def run(ctx: StageContext) -> StageResult:
    cfg, tc = ctx.cfg, ctx.cfg.train
    inputs = training_inputs(ctx, tc.text.enabled)
    item_ids, text = inputs.item_ids, inputs.text
    config = model_config(cfg, len(item_ids), 0 if text is None else text.shape[1])
    log_params({**config.to_dict(), **tc.model_dump(exclude={"model", "dim", "layers", "heads", "dropout",
                                                              "mask_prob"}),
                "window_stride": cfg.sequences.window_stride})
    checkpoints = checkpoint_dir(cfg, config.to_dict(), inputs.versions)

    result = train_distributed(ctx.spark, inputs.train_urls, inputs.valid_urls, config, tc, str(checkpoints), text,
                               progress=progress_enabled(cfg.log), exclude_types=cfg.score.exclude_event_types)
    for row in result.history:  # the per-epoch curves, logged from the driver once the ranks are done
        mlflow.log_metrics({k: row[k] for k in ("train_loss", "valid_ndcg_10", "valid_hr_10")}, step=row["epoch"])
    with tempfile.TemporaryDirectory() as tmp:
        plot_learning_curves(result.history, result.best["epoch"], Path(tmp, CURVES))
        mlflow.log_artifact(str(Path(tmp, CURVES)))

    model = build_model(config)
    model.load_state_dict(result.state_dict)  # text-aware: the text embeddings and the seen-items mask included
    name, model_version, _ = log_model(model.eval(), item_ids, cfg.mlflow.registered_model,
                                       tags=lineage_tags(ctx.lake.reads, ctx.pipeline_run_id), top_k=cfg.score.top_n)
    mlflow.set_tags({"lakerec.model_name": name, "lakerec.model_version": model_version,
                     "lakerec.checkpoints": str(checkpoints)})
    best = result.best
    return StageResult(metrics={
        "best_valid_ndcg_10": best["valid_ndcg_10"], "best_valid_hr_10": best["valid_hr_10"],
        "best_epoch": best["epoch"], "epochs_run": len(result.history), "seconds_to_best": best["seconds"],
        "resumed_from_epoch": result.resumed_from, "final_train_loss": result.history[-1]["train_loss"],
        "model_version": int(model_version), "train_rows": sum(r["rows"] for r in result.ranks),
        "steps_per_epoch": result.ranks[0]["steps_per_epoch"], "train_seconds": max(r["seconds"] for r in result.ranks),
    })


def item_text_matrix(ctx: StageContext, item_ids: list[str]) -> np.ndarray:
    """[n_items + 1, dim] text.encoder's embeddings by item_idx (zeros for an item the catalog has no text for)."""
    encoder = ctx.cfg.text.encoder
    if not ctx.lake.exists(T.SILVER_ITEM_EMBEDDINGS):
        raise SequenceInputError(f"train.text.enabled needs {T.SILVER_ITEM_EMBEDDINGS}: run the embed stage")
    rows = read_item_embeddings(ctx.lake.read(T.SILVER_ITEM_EMBEDDINGS), encoder).toPandas()
    if rows.empty:
        raise SequenceInputError(f"{T.SILVER_ITEM_EMBEDDINGS} has no rows for encoder {encoder!r}: run the embed "
                                 f"stage with text.encoder={encoder}")
    matrix = embedding_matrix(rows, item_ids)
    missing = int((~matrix[1:].any(axis=1)).sum())
    if missing:
        log.warning("[train] %d of %d items have no text embedding (ID only, or nothing when cold)", missing,
                    len(item_ids))
    return matrix


def check_lineage(ctx: StageContext, windows_version: int, sequences_version: int) -> None:
    """The windows must be cut from the silver.sequences version that validation reads."""
    commit = next(c for c in ctx.lake.history(T.SILVER_TRAIN_WINDOWS) if c["version"] == windows_version)
    cut_from = commit["metadata"].get(SEQUENCES_VERSION)
    if cut_from != str(sequences_version):
        raise SequenceInputError(f"{T.SILVER_TRAIN_WINDOWS} v{windows_version} was cut from {T.SILVER_SEQUENCES} "
                                 f"v{cut_from}, but that table is at v{sequences_version}: rerun the sequences stage")


def checkpoint_dir(cfg, model_config: dict, versions: dict[str, int]) -> Path:
    """<lake.root>/checkpoints/<run key>: the key hashes what determines the run (model, training settings but
    not resume or timeouts, the table versions), so --resume finds the checkpoints of the same run and no other."""
    settings = cfg.train.model_dump(exclude={"resume", "timeout_s"})
    key = json.dumps({"model": model_config, "train": settings, "tables": versions}, sort_keys=True)
    return Path(cfg.lake.root).resolve() / "checkpoints" / hashlib.sha256(key.encode()).hexdigest()[:16]


main = job_main("train", run, __doc__, options=OPTIONS)

if __name__ == "__main__":
    main()
