"""silver.sequences (its snapshot files, through Petastorm) + silver.item_index -> SASRec trained on
cfg.train.ranks Horovod ranks, validated, logged and registered in MLflow as cfg.mlflow.registered_model."""
import mlflow

from jobs.common import job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult, log_params
from lakerec.data.feed import petastorm_urls
from lakerec.data.sequences import item_ids_in_order
from lakerec.evaluate.metrics import EVAL_COLUMNS, evaluate_all, model_scores, overall
from lakerec.models.registry import lineage_tags, log_model
from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.train.runner import train_distributed


def run(ctx: StageContext) -> StageResult:
    cfg, tc = ctx.cfg, ctx.cfg.train
    item_ids = item_ids_in_order(ctx.lake.read(T.SILVER_ITEM_INDEX))
    version = ctx.lake.version(T.SILVER_SEQUENCES)  # one snapshot for the feed and the validation
    urls = petastorm_urls(ctx.lake.files(T.SILVER_SEQUENCES, version))
    config = SASRecConfig(n_items=len(item_ids), max_len=cfg.sequences.max_len, dim=tc.dim, layers=tc.layers,
                          heads=tc.heads, dropout=tc.dropout)
    log_params({**config.to_dict(), **tc.model_dump(exclude={"model", "dim", "layers", "heads", "dropout"})})

    result = train_distributed(ctx.spark, urls, config, tc)
    for epoch, loss in enumerate(result.history, 1):  # the per-epoch curve; the stage metric is final_train_loss
        mlflow.log_metric("train_loss", loss, step=epoch)
    model = SASRec(config)
    model.load_state_dict(result.state_dict)

    sequences = ctx.lake.read(T.SILVER_SEQUENCES, version).where(f"{T.TEST_TARGET} > 0").select(*EVAL_COLUMNS)
    valid = overall(evaluate_all(sequences.toPandas(), len(item_ids), cfg.evaluate.ks, {"model": model_scores(model)},
                                 split="valid"), "model")
    name, model_version, _ = log_model(model, item_ids, cfg.mlflow.registered_model,
                                       tags=lineage_tags(ctx.lake.reads, ctx.pipeline_run_id), top_k=cfg.score.top_n)
    mlflow.set_tags({"lakerec.model_name": name, "lakerec.model_version": model_version})
    return StageResult(metrics={
        "final_train_loss": result.history[-1], "model_version": int(model_version),
        "train_rows": sum(r["rows"] for r in result.ranks), "steps_per_epoch": result.ranks[0]["steps_per_epoch"],
        "train_seconds": max(r["seconds"] for r in result.ranks),
        **{f"valid_{k}": v for k, v in valid.items()},
    })


main = job_main("train", run, __doc__)

if __name__ == "__main__":
    main()
