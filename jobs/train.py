"""silver.train_windows (its snapshot files, through Petastorm) + silver.sequences (validation users) +
silver.item_index -> the train.model Transformer trained on cfg.train.ranks Horovod ranks with per-epoch
validation and early stopping, checkpointed every epoch, its best epoch logged and registered in MLflow as
cfg.mlflow.registered_model. With train.text.enabled the items are text-aware: silver.item_embeddings
(text.encoder's rows) go to every rank and into the registered model. With train.init (champion or a version) the
run starts from that registered model grown to the current item index, on the windows new since the parent's
data plus a replay sample (silver.warm_windows); its version's tags name the parent and both runs' tables."""
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from jobs.common import JobOption, job_main
from lakerec import tables as T
from lakerec.config import MODEL_NAMES
from lakerec.context import StageContext, StageResult, log_params
from lakerec.data.feed import petastorm_urls
from lakerec.data.sequences import (SEQUENCES_VERSION, SequenceInputError, item_ids_in_order, layout_for_feed,
                                    warm_windows)
from lakerec.lake import Lake
from lakerec.logs import progress_enabled
from lakerec.models import build_model, model_config
from lakerec.models.registry import check_renamed, lineage_tags, log_model
from lakerec.text.embeddings import embedding_matrix, read_item_embeddings
from lakerec.train.curves import plot_learning_curves
from lakerec.train.runner import train_distributed
from lakerec.train.warm import (Parent, WarmStartError, check_compatible, grown_state, lineage, load_parent,
                                train_key, trained_version)

log = logging.getLogger("lakerec")

OPTIONS = [JobOption("--resume", "train.resume", "Continue the last checkpoint of this run (same conf and table "
                     "versions) instead of starting over.", is_flag=True),
           JobOption("--model", "train.model", f"The sequence model: {' | '.join(MODEL_NAMES)} (default: train.model).",
                     metavar="NAME")]
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
    index_version = ctx.lake.version(T.SILVER_ITEM_INDEX)
    item_ids = item_ids_in_order(ctx.lake.read(T.SILVER_ITEM_INDEX, index_version))
    sequences_version = ctx.lake.version(T.SILVER_SEQUENCES)
    windows_version = ctx.lake.version(T.SILVER_TRAIN_WINDOWS)
    check_lineage(ctx, windows_version, sequences_version)
    text = item_text_matrix(ctx, item_ids) if text_aware else None
    versions = {T.SILVER_TRAIN_WINDOWS: windows_version, T.SILVER_SEQUENCES: sequences_version,
                T.SILVER_ITEM_INDEX: index_version}
    if text is not None:
        versions[T.SILVER_ITEM_EMBEDDINGS] = ctx.lake.reads[T.SILVER_ITEM_EMBEDDINGS]
    return TrainingInputs(item_ids, petastorm_urls(ctx.lake.files(T.SILVER_TRAIN_WINDOWS, windows_version)),
                          petastorm_urls(ctx.lake.files(T.SILVER_SEQUENCES, sequences_version)), text, versions)


def run(ctx: StageContext) -> StageResult:
    cfg, tc = ctx.cfg, ctx.cfg.train
    name = cfg.mlflow.registered_model
    check_renamed(name)  # before hours of training, not at registration
    inputs = training_inputs(ctx, tc.text.enabled)
    item_ids, text, versions = inputs.item_ids, inputs.text, dict(inputs.versions)
    index_version, sequences_version = versions[T.SILVER_ITEM_INDEX], versions[T.SILVER_SEQUENCES]
    config = model_config(cfg, len(item_ids), 0 if text is None else text.shape[1])
    key = train_key(config.to_dict(), train_settings(cfg), versions)

    parent, init_state, warm = None, None, {}
    if tc.init != "scratch":
        done = trained_version(name, key) if cfg.refresh.skip_done else None
        if done:
            return StageResult(skipped=f"{name} v{done} was already trained on these inputs (train key {key})")
        parent = load_parent(name, tc.init, cfg.evaluate.champion_alias)
        check_compatible(parent, config, item_ids, index_version)
        if parent.read_version(T.SILVER_SEQUENCES) == sequences_version:
            return StageResult(skipped=f"parent {name} v{parent.version} was trained on {T.SILVER_SEQUENCES} "
                                       f"v{sequences_version}: no new events to train on")
        warm = write_warm_windows(ctx, parent, sequences_version, versions[T.SILVER_TRAIN_WINDOWS])
        if not warm["warm_new_windows"]:
            return StageResult(skipped=f"no training window is new since parent {name} v{parent.version}")
        init_state = grown_state(parent.model, config, text)
        warm["warm_new_items"] = len(item_ids) - len(parent.meta["item_ids"])
        train_urls = petastorm_urls(ctx.lake.files(T.SILVER_WARM_WINDOWS, warm.pop("version")))
        versions.update({T.SILVER_WARM_WINDOWS: ctx.lake.reads[T.SILVER_WARM_WINDOWS], "parent": parent.version})
    else:
        train_urls = inputs.train_urls
    log_params({**config.to_dict(), **tc.model_dump(exclude={"model", "dim", "layers", "heads", "dropout",
                                                              "mask_prob"}),
                "window_stride": cfg.sequences.window_stride})
    checkpoints = checkpoint_dir(cfg, config.to_dict(), versions)

    result = train_distributed(ctx.spark, train_urls, inputs.valid_urls, config, tc, str(checkpoints), text,
                               progress=progress_enabled(cfg.log), exclude_types=cfg.score.exclude_event_types,
                               init_state=init_state, fail_rank=cfg.drill.fail_rank)
    for row in result.history:  # the per-epoch curves, logged from the driver once the ranks are done
        mlflow.log_metrics({k: row[k] for k in ("train_loss", "valid_ndcg_10", "valid_hr_10")}, step=row["epoch"])
    with tempfile.TemporaryDirectory() as tmp:
        plot_learning_curves(result.history, result.best["epoch"], Path(tmp, CURVES))
        mlflow.log_artifact(str(Path(tmp, CURVES)))

    model = build_model(config)
    model.load_state_dict(result.state_dict)  # text-aware: the text embeddings and the seen-items mask included
    tags = {**lineage_tags(ctx.lake.reads, ctx.pipeline_run_id), **lineage(parent, tc.init, key)}
    name, model_version, _ = log_model(model.eval(), item_ids, name, tags=tags, top_k=cfg.score.top_n)
    mlflow.set_tags({"lakerec.model_name": name, "lakerec.model_version": model_version,
                     "lakerec.checkpoints": str(checkpoints), "lakerec.init_checksum": result.ranks[0]["init_checksum"],
                     **({"lakerec.parent_version": parent.version} if parent else {})})
    best = result.best
    return StageResult(metrics={
        "best_valid_ndcg_10": best["valid_ndcg_10"], "best_valid_hr_10": best["valid_hr_10"],
        "best_epoch": best["epoch"], "epochs_run": len(result.history), "seconds_to_best": best["seconds"],
        "resumed_from_epoch": result.resumed_from, "final_train_loss": result.history[-1]["train_loss"],
        "model_version": int(model_version), "train_rows": sum(r["rows"] for r in result.ranks),
        "steps_per_epoch": result.ranks[0]["steps_per_epoch"], "train_seconds": max(r["seconds"] for r in result.ranks),
        **warm,
    })


def write_warm_windows(ctx: StageContext, parent: Parent, sequences_version: int, windows_version: int) -> dict:
    """silver.warm_windows: the windows new since the parent's silver.sequences snapshot plus the replay sample.

    The parent's snapshot is read through a Lake of its own, so this run's lineage records only its own reads."""
    cfg = ctx.cfg
    before = parent.read_version(T.SILVER_SEQUENCES)
    if before is None:
        raise WarmStartError(f"{parent.describe()} has no read.{T.SILVER_SEQUENCES} tag: which data it saw is "
                             "unknown, so the new windows cannot be told apart; train with train.init=scratch")
    try:
        parent_sequences = Lake(cfg.lake.root, ctx.spark, cfg.lake.engine).read(T.SILVER_SEQUENCES, before)
    except Exception as e:
        raise WarmStartError(f"{parent.describe()} was trained on {T.SILVER_SEQUENCES} v{before}, which cannot be "
                             f"read any more ({type(e).__name__}); train with train.init=scratch") from e
    new, replay = warm_windows(ctx.lake.read(T.SILVER_TRAIN_WINDOWS, windows_version),
                               ctx.lake.read(T.SILVER_SEQUENCES, sequences_version), parent_sequences,
                               cfg.sequences, cfg.train.replay_share, cfg.train.seed)
    new, replay = new.persist(), replay.persist()
    try:
        n_new, n_replay = new.count(), replay.count()
        if not n_new:
            return {"warm_new_windows": 0}
        if n_new + n_replay < cfg.train.ranks:
            raise WarmStartError(f"{n_new + n_replay} warm windows cannot feed train.ranks={cfg.train.ranks}: "
                                 "lower train.ranks or raise train.replay_share")
        version = ctx.lake.write(T.SILVER_WARM_WINDOWS, layout_for_feed(new.union(replay), 2 * cfg.train.ranks),
                                 mode="overwrite", metadata={"parent_version": parent.version,
                                                             SEQUENCES_VERSION: str(sequences_version),
                                                             "new": str(n_new), "replay": str(n_replay)})
    finally:
        new.unpersist()
        replay.unpersist()
    return {"version": version, "warm_new_windows": n_new, "warm_replay_windows": n_replay}


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


def train_settings(cfg) -> dict:
    """The training settings that determine a run's result (not resume, timeouts or the ranks' allocator; not
    train.contrastive while its weight is 0 nor train.loss_positions while `all`, which train as before they
    existed: a lake trained then keeps its run keys)."""
    settings = cfg.train.model_dump(mode="json", exclude={"resume", "timeout_s", "malloc_mmap_threshold"})
    if not cfg.train.contrastive.weight:
        del settings["contrastive"]
    if cfg.train.loss_positions == "all":
        del settings["loss_positions"]
    return settings


def checkpoint_dir(cfg, model_config: dict, versions: dict) -> Path:
    """<lake.root>/checkpoints/<run key>: the key hashes what determines the run (model, training settings, the
    table versions and a warm start's parent), so --resume finds the checkpoints of the same run and no other."""
    return Path(cfg.lake.root).resolve() / "checkpoints" / train_key(model_config, train_settings(cfg), versions)


main = job_main("train", run, __doc__, options=OPTIONS)

if __name__ == "__main__":
    main()
