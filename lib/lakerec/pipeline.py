"""The pipeline as data: stages, the job each runs, and what each depends on."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


from lakerec.config import packaged_file


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    job: str
    depends_on: list[str] = []
    doc: str = ""
    retries: int | None = Field(None, ge=0)  # None: the schedule's default
    daily: list[str] = []  # --set overrides for a scheduled daily run; "{ds}" is the run's date (YYYY-MM-DD)


class Schedule(BaseModel):
    """How schedulers run the pipeline: what the generated Airflow DAG and Databricks job are made from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cron: str = "0 3 * * *"
    start_date: date = date(2026, 11, 1)
    retries: int = Field(2, ge=0)
    retry_delay_minutes: int = Field(10, ge=0)
    timeout_minutes: int = Field(180, ge=1)
    profile: str = "cluster"
    params: dict[str, str] = {}  # values the overrides may name as {key}; editable per run in Airflow
    set: list[str] = []  # --set overrides for every stage


class StageSet(BaseModel):
    """A named subset of the stages run one after the other in the listed order (e.g. the daily refresh), with
    overrides of its own: `lakerec <set>` runs it, and it is rendered to schedulers like the whole pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stages: list[str] = Field(min_length=1)
    doc: str = ""
    cron: str | None = None  # its own schedule; None: the pipeline's
    set: list[str] = []  # --set overrides for every stage of the set (the command line's come after)


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    schedule: Schedule = Schedule()
    stages: list[Stage]
    sets: dict[str, StageSet] = {}

    @model_validator(mode="after")
    def _check_graph(self) -> "Pipeline":
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names in {names}")
        for s in self.stages:
            missing = set(s.depends_on) - set(names)
            if missing:
                raise ValueError(f"stage {s.name!r} depends on unknown stage(s) {sorted(missing)}")
            for override in [*self.schedule.set, *s.daily]:
                try:
                    override.format(ds="", **self.schedule.params)
                except (KeyError, IndexError) as e:
                    raise ValueError(f"stage {s.name!r}: daily override {override!r} names {e}, which is "
                                     f"neither ds nor a schedule param {sorted(self.schedule.params)}") from None
        self.order()  # raises on a cycle
        for set_name, stage_set in self.sets.items():
            unknown = sorted(set(stage_set.stages) - set(names))
            if unknown:
                raise ValueError(f"stage set {set_name!r} names unknown stage(s) {unknown}")
            for i, stage in enumerate(stage_set.stages):
                late = [d for d in self.stage(stage).depends_on if d in stage_set.stages[i + 1:]]
                if late:
                    raise ValueError(f"stage set {set_name!r} lists {stage!r} before {late}, which it depends on")
        return self

    def subset(self, set_name: str) -> "Pipeline":
        """The stage set as a pipeline of its own: its stages chained in the listed order, the pipeline's schedule
        with the set's cron, and the set's overrides after the schedule's."""
        if set_name not in self.sets:
            raise KeyError(f"unknown stage set {set_name!r}; sets: {sorted(self.sets)}")
        chosen = self.sets[set_name]
        stages = [self.stage(name).model_copy(update={"depends_on": chosen.stages[i - 1: i]})
                  for i, name in enumerate(chosen.stages)]
        schedule = self.schedule.model_copy(update={"cron": chosen.cron or self.schedule.cron,
                                                    "set": [*self.schedule.set, *chosen.set]})
        return Pipeline(name=f"{self.name}_{set_name}", schedule=schedule, stages=stages)

    def order(self) -> list[Stage]:
        """Stages in dependency order (declaration order among independent stages)."""
        done: list[str] = []
        pending = list(self.stages)
        while pending:
            ready = [s for s in pending if set(s.depends_on) <= set(done)]
            if not ready:
                raise ValueError(f"dependency cycle among {[s.name for s in pending]}")
            done.append(ready[0].name)
            pending.remove(ready[0])
        by_name = {s.name: s for s in self.stages}
        return [by_name[n] for n in done]

    def retries(self, stage: Stage) -> int:
        return self.schedule.retries if stage.retries is None else stage.retries

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"unknown stage {name!r}; stages: {[s.name for s in self.stages]}")


def default_pipeline_file() -> Path:
    """./pipelines/lakerec.yaml, else the definition lakerec ships (so `lakerec` runs from any folder)."""
    here = Path("pipelines/lakerec.yaml")
    found = here if here.is_file() else packaged_file("pipelines/lakerec.yaml")
    if found is None:
        raise FileNotFoundError("pipelines/lakerec.yaml not found: pass --pipeline")
    return found


def load_pipeline(path: str | Path | None = None) -> Pipeline:
    return Pipeline.model_validate(yaml.safe_load(Path(path or default_pipeline_file()).read_text()))
