"""The registered SASRec version (given by evaluate.model_version, else the one this pipeline run's train stage
registered, else the latest) on the silver.sequences snapshot it was trained on -> full-ranking HR/NDCG/MRR on
the test and valid splits, beside a most-popular baseline, in MLflow."""
import mlflow

from jobs.common import job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult
from lakerec.evaluate.metrics import EVAL_COLUMNS, evaluate_sequences
from lakerec.models.registry import load_model, resolve_version


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg
    name = cfg.mlflow.registered_model
    version, chosen_by = resolve_version(name, cfg.evaluate.model_version, ctx.pipeline_run_id)
    model, meta = load_model((name, version))
    mlflow.set_tags({"lakerec.model_name": name, "lakerec.model_version": version,
                     "lakerec.model_chosen_by": chosen_by})

    trained_on = meta["tags"].get(f"read.{T.SILVER_SEQUENCES}")  # the same users and splits it was validated on
    sequences = ctx.lake.read(T.SILVER_SEQUENCES, int(trained_on) if trained_on is not None else None)
    rows = sequences.where(f"{T.TEST_TARGET} > 0").select(*EVAL_COLUMNS).toPandas()
    metrics = evaluate_sequences(rows, meta["n_items"], cfg.evaluate.ks, model)
    return StageResult(metrics={**metrics, "model_version": int(version)})


main = job_main("evaluate", run, __doc__)

if __name__ == "__main__":
    main()
