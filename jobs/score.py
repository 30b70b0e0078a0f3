"""A registered model (score.model_version, score.model_alias, else this pipeline run's, else the latest) scores every
user of silver.events (at score.silver_version, else as the last complete silver run published it) against the
candidate items (a text-aware model adds new catalog items from silver.item_embeddings, scored from their text)
-> gold.topn: top_n rows a user with the history item behind each, cold users' rows from recent popularity
(score.recent_weight > 0: the model's logits plus a recent-popularity prior, lakerec.score.batch).
Everything that can be wrong with the model, the data or the candidates fails before the write; the write is one
Delta commit, so readers see the previous complete table or the new one; files of versions older than
score.retention_hours are vacuumed.
The commit records the model, the silver.events version and the settings: with refresh.skip_done a run that would
write the same is skipped."""
import hashlib
import json

import mlflow
from pyspark.sql import functions as F

from jobs.common import JobOption, job_main
from lakerec import tables as T
from lakerec.context import StageContext, StageResult
from lakerec.data.sequences import order_keys
from lakerec.etl.silver import published_versions
from lakerec.models.registry import load_model, resolve_version
from lakerec.score.batch import (Candidates, ScoreCounters, ScoringInputError, candidate_items, check_events,
                                 item_users, popularity, recent_prior, score_users, stamp, text_only_items,
                                 user_states)
from lakerec.text.embeddings import load_item_embeddings

OPTIONS = [
    JobOption("--model-version", "score.model_version", "Registered model version to score with.", metavar="N"),
    JobOption("--model-alias", "score.model_alias", "Registered model alias to score with (e.g. champion).",
              metavar="ALIAS"),
    JobOption("--silver-version", "score.silver_version", "silver.events version to read users from.", metavar="N"),
]


def run(ctx: StageContext) -> StageResult:
    cfg, lake, conf = ctx.cfg, ctx.lake, ctx.cfg.score
    name = cfg.mlflow.registered_model
    version, chosen_by = resolve_version(name, conf.model_version, ctx.pipeline_run_id, conf.model_alias)
    mlflow.set_tags({"lakerec.model_name": name, "lakerec.model_version": version, "lakerec.model_chosen_by": chosen_by})
    silver = conf.silver_version
    if silver is None:  # as the last complete silver run published it (the latest where no run recorded one)
        silver = published_versions(lake).get(T.SILVER_EVENTS, lake.version(T.SILVER_EVENTS))
    made_of = {"model": f"{name}/{version}", "silver_version": str(silver), "settings": settings_key(cfg)}
    if cfg.refresh.skip_done and lake.exists(T.GOLD_TOPN) and published_from(lake) == made_of:
        return StageResult(skipped=f"{T.GOLD_TOPN} v{lake.version(T.GOLD_TOPN)} already holds {name} v{version} "
                                   f"on {T.SILVER_EVENTS} v{silver}")
    model, meta = load_model((name, version))

    events = lake.read(T.SILVER_EVENTS, silver)
    check_events(events)
    model_items = meta["item_ids"]
    embeddings = (load_item_embeddings(lake, model.config.text_encoder).toPandas()
                  if model.config.text_dim and lake.exists(T.SILVER_ITEM_EMBEDDINGS) else None)
    new_items, text_only = text_only_items(model, embeddings, model_items)  # a text-aware model scores new items
    item_ids = model_items + new_items
    allowed = lake.read(conf.candidates.table) if conf.candidates.table else None
    catalog = lake.read(T.SILVER_ITEMS) if conf.candidates.categories else None
    idx = candidate_items(item_ids, conf.candidates, allowed, catalog)

    # item_users (newest ts, then counts per item) and user_states each scan the events: read them once
    events = events.select(T.USER_ID, T.ITEM_ID, T.EVENT_TYPE, *order_keys(events)).persist()
    users = user_states(events, item_ids, model.config.max_len, conf.exclude_event_types, len(model_items)).persist()
    try:
        recent, total = item_users(events, item_ids, [conf.fallback_days, conf.recent_days])
        prior = recent_prior(recent[1], conf.recent_weight)[idx] if conf.recent_weight else None
        candidates = Candidates(idx, popularity(recent[0], total)[idx], prior)
        counts = users.agg(F.count(F.lit(1)).alias("users"),
                           F.sum((F.array_max(T.SCORE_INPUT) == 0).cast("long")).alias("cold")).first()
        n_users, n_cold = int(counts["users"]), int(counts["cold"] or 0)
        if n_users == 0:
            raise ScoringInputError(f"silver.events v{lake.reads[T.SILVER_EVENTS]} has no users: "
                                    "gold.topn is left as it is")
        if n_cold == n_users:
            raise ScoringInputError(f"none of the {n_users} users has an item the model knows: model {name}/{version} "
                                    "and silver.events disagree on item ids (another catalog, or ids cased differently)")
        counters = ScoreCounters.create(ctx.spark) if conf.precision == "bf16" else None
        topn = stamp(score_users(ctx.spark, users, model, item_ids, candidates, conf, text_only, counters=counters),
                     name, version, ctx.run_id, lake.reads[T.SILVER_EVENTS])
        written = lake.write(T.GOLD_TOPN, topn, mode="overwrite", metadata=made_of)
    finally:
        users.unpersist()
        events.unpersist()
    vacuumed = lake.vacuum(T.GOLD_TOPN, conf.retention_hours)
    rows = lake.read(T.GOLD_TOPN, written).count()
    precision = {} if counters is None else {"users_bf16_shortlist": counters.shortlisted.value,
                                             "users_fp32_fallback": counters.fallback.value}
    return StageResult(metrics={"users_scored": n_users, "users_cold": n_cold, "rows": rows,
                                "candidates": int(candidates.item_idx.size), "candidates_text_only": len(new_items),
                                "files_vacuumed": len(vacuumed), **precision})


def settings_key(cfg) -> str:
    """The scoring settings gold.topn's content depends on (besides the model and the silver.events version); the
    recent prior's keys only while it is on, so a table scored before they existed keys as it did."""
    unused = {"model_version", "model_alias", "silver_version", "retention_hours"}
    if not cfg.score.recent_weight:
        unused |= {"recent_weight", "recent_days"}
    settings = {"score": cfg.score.model_dump(mode="json", exclude=unused),
                "max_len": cfg.sequences.max_len}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def published_from(lake) -> dict:
    """What gold.topn's current version was made of (its commit metadata: model, silver_version, settings)."""
    meta = lake.history(T.GOLD_TOPN)[0]["metadata"]
    return {k: meta.get(k) for k in ("model", "silver_version", "settings")}


main = job_main("score", run, __doc__, options=OPTIONS)

if __name__ == "__main__":
    main()
