"""The registered model (score.model_version, else this pipeline run's, else the latest) scores every user in
silver.sequences against every item -> gold.topn, N rows a user, history excluded, replaced in one commit."""
import mlflow
from pyspark.sql import functions as F

from jobs.common import job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult
from lakerec.models.registry import load_model, resolve_version
from lakerec.score.batch import HISTORY, check_item_index, score_users, stamp, user_histories


def run(ctx: StageContext) -> StageResult:
    cfg, lake = ctx.cfg, ctx.lake
    name = cfg.mlflow.registered_model
    version, chosen_by = resolve_version(name, cfg.score.model_version, ctx.pipeline_run_id)
    model, meta = load_model((name, version))
    mlflow.set_tags({"lakerec.model_name": name, "lakerec.model_version": version, "lakerec.model_chosen_by": chosen_by})

    events, item_index = lake.read(T.SILVER_EVENTS), lake.read(T.SILVER_ITEM_INDEX)
    check_item_index(item_index, meta["item_ids"])  # before any write: the model and the data must agree
    users = (lake.read(T.SILVER_SEQUENCES).select(T.USER_ID, T.SCORE_INPUT)
             .join(user_histories(events, item_index), T.USER_ID, "left")
             .withColumn(HISTORY, F.coalesce(HISTORY, F.array().cast("array<int>"))))
    topn = score_users(ctx.spark, users, model, meta["item_ids"], cfg.score)
    out = stamp(topn, name, version, meta["run_id"], lake.reads[T.SILVER_EVENTS])
    lake.write(T.GOLD_TOPN, out, mode="overwrite", metadata={"model": f"{name}/{version}"})
    gold = lake.read(T.GOLD_TOPN, lake.writes[T.GOLD_TOPN])
    return StageResult(metrics={"users_scored": gold.select(T.USER_ID).distinct().count(), "rows": gold.count()})


main = job_main("score", run, __doc__)

if __name__ == "__main__":
    main()
