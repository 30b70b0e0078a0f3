"""The registered model version (given by evaluate.model_version, else the one this pipeline run's train stage
registered, else the latest) on the silver.sequences snapshot it was trained on, beside the baselines (most
popular, co-occurrence, ALS tuned on valid) and the current champion on that same snapshot: full-ranking
metrics overall and per slice in MLflow (`test.<model>.<metric>`, `test.<model>.slice.<slice>.<metric>`),
plots and a tidy CSV; the champion alias moves to this version only when it beats the champion. The version is
then tagged with what evaluated it: with refresh.skip_done a version already evaluated so is skipped."""
import hashlib
import json

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from jobs.common import job_main
from lakerec import tables as T
from lakerec import tracking
from lakerec.config import EvaluateConf
from lakerec.context import StageContext, StageResult, log_params
from lakerec.evaluate import baselines as B
from lakerec.evaluate.champion import (CHAMPION, CHAMPION_METRIC, aligned_scores, current_champion,
                                       promote_if_better)
from lakerec.evaluate.metrics import EVAL_COLUMNS, ScoreFn, evaluate_all, model_scores, overall
from lakerec.evaluate.report import metric_names, ranks_artifact, report_artifacts
from lakerec.models.registry import load_model, resolve_version

HEADLINE = ("hr_10", "ndcg_10", "mrr_10", "coverage_10")  # per model in the stage result; the rest goes to MLflow
EVALUATED_TAG = "lakerec.evaluated"  # on the model version: the key of the settings it was evaluated with


def baseline_scorers(spark: SparkSession, rows: pd.DataFrame, n_items: int, conf: EvaluateConf,
                     exclude_types: list[str] | None) -> tuple[dict[str, ScoreFn], dict[str, pd.DataFrame]]:
    """The configured baselines fitted for test (co-occurrence and ALS first tuned on valid under the serving
    rule's exclude_types) and the tuning tables (valid metrics per decay, per ALS grid point)."""
    scorers, tables = {}, {}
    if "pop" in conf.baselines:
        scorers[B.POP] = B.popularity_scorer(rows, n_items, "test")
    if "cooc" in conf.baselines:
        decay, tables["cooc_decay_valid"] = B.tune_cooccurrence(rows, n_items, conf.cooc_decays, conf.ks,
                                                                CHAMPION_METRIC, exclude_types, conf.item_chunk)
        log_params({"cooc.decay": decay})
        scorers[B.COOC] = B.cooccurrence_scorer(rows, n_items, "test", decay)
    if "als" in conf.baselines:
        g = conf.als
        best, tables["als_grid_valid"] = B.tune_als(spark, rows, n_items, B.als_grid(
            g.ranks, g.reg_params, g.alphas, g.max_iter, g.seed), conf.ks, CHAMPION_METRIC, exclude_types,
            conf.item_chunk)
        log_params({f"als.{k}": v for k, v in best.__dict__.items()})
        scorers[B.ALS_NAME] = B.als_scorer(spark, rows, n_items, "test", best)
    return scorers, tables


def run(ctx: StageContext) -> StageResult:
    cfg, conf = ctx.cfg, ctx.cfg.evaluate
    name = cfg.mlflow.registered_model
    version, chosen_by = resolve_version(name, conf.model_version, ctx.pipeline_run_id)
    key = evaluation_key(cfg)
    client = MlflowClient()
    if cfg.refresh.skip_done and client.get_model_version(name, version).tags.get(EVALUATED_TAG) == key:
        return StageResult(skipped=f"{name} v{version} was already evaluated with these settings")
    model, meta = load_model((name, version))
    mlflow.set_tags({"lakerec.model_name": name, "lakerec.model_version": version,
                     "lakerec.model_chosen_by": chosen_by})

    trained_on = meta["tags"].get(f"read.{T.SILVER_SEQUENCES}")  # the same users and splits it was validated on
    sequences = ctx.lake.read(T.SILVER_SEQUENCES, int(trained_on) if trained_on is not None else None)
    columns = [c for c in EVAL_COLUMNS if c in sequences.columns]  # snapshots before history_types: no type filter
    rows = sequences.where(f"{T.TEST_TARGET} > 0").select(*columns).toPandas()
    n_items, label = meta["n_items"], cfg.train.model

    scorers: dict[str, ScoreFn] = {label: model_scores(model)}
    champion = current_champion(name, conf.champion_alias)
    if champion is not None and champion != version:
        champion_model, champion_meta = load_model((name, champion))
        scorers[CHAMPION] = aligned_scores(champion_model, champion_meta["item_ids"], meta["item_ids"])
    exclude_types = cfg.score.exclude_event_types  # the serving rule: rank what scoring would recommend
    baselines, extra = baseline_scorers(ctx.spark, rows, n_items, conf, exclude_types)
    ranks: dict = {}
    table = evaluate_all(rows, n_items, conf.ks, {**scorers, **baselines}, "test", conf.batch_size,
                         head_share=conf.head_share, length_edges=conf.length_edges, exclude_types=exclude_types,
                         ranks_out=ranks, item_chunk=conf.item_chunk)
    # rows hold only users with a test target, in order
    tracking.log_artifacts(ranks_artifact(rows[T.USER_ID].to_numpy(), ranks, "test"))

    candidate = overall(table, label)[CHAMPION_METRIC]
    champion_score = overall(table, CHAMPION)[CHAMPION_METRIC] if CHAMPION in scorers else None
    promoted = champion != version and promote_if_better(name, version, conf.champion_alias, candidate,
                                                         champion_score)
    mlflow.set_tags({"lakerec.champion_before": champion or "none",
                     "lakerec.champion_after": version if promoted else (champion or "none")})
    client.set_model_version_tag(name, version, EVALUATED_TAG, key)

    metrics = metric_names(table, "test")
    headline = {k: v for k, v in metrics.items() if k.split(".", 2)[-1] in HEADLINE}
    mlflow.log_metrics({k: v for k, v in metrics.items() if k not in headline})
    tracking.log_artifacts(report_artifacts(table, "test", extra))
    repeat_share = overall(table, label)["repeat_target_share"]
    best_baseline = max((overall(table, b)[CHAMPION_METRIC] for b in baselines), default=float("nan"))
    ratio = candidate / best_baseline if best_baseline else float("nan")
    return StageResult(metrics={**headline, "test_users": float(len(rows)), "repeat_target_share": repeat_share,
                                "ndcg_10_vs_best_baseline": ratio,
                                "model_version": int(version),
                                "champion_promoted": float(promoted)})


def evaluation_key(cfg) -> str:
    """The settings an evaluation's verdict depends on (besides the version and its snapshot); item_chunk changes
    no result, so it is left out (keys of evaluations made before it existed stay valid)."""
    settings = {"evaluate": cfg.evaluate.model_dump(mode="json", exclude={"model_version", "item_chunk"}),
                "exclude_event_types": cfg.score.exclude_event_types}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


main = job_main("evaluate", run, __doc__)

if __name__ == "__main__":
    main()
