"""The pipeline as data: stages, the job each runs, and what each depends on."""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, model_validator


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    job: str
    depends_on: list[str] = []
    doc: str = ""


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    stages: list[Stage]

    @model_validator(mode="after")
    def _check_graph(self) -> "Pipeline":
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names in {names}")
        for s in self.stages:
            missing = set(s.depends_on) - set(names)
            if missing:
                raise ValueError(f"stage {s.name!r} depends on unknown stage(s) {sorted(missing)}")
        self.order()  # raises on a cycle
        return self

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

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"unknown stage {name!r}; stages: {[s.name for s in self.stages]}")


def default_pipeline_file() -> Path:
    for candidate in (Path("pipelines/lakerec.yaml"), Path(__file__).resolve().parents[2] / "pipelines/lakerec.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("pipelines/lakerec.yaml not found")


def load_pipeline(path: str | Path | None = None) -> Pipeline:
    return Pipeline.model_validate(yaml.safe_load(Path(path or default_pipeline_file()).read_text()))
