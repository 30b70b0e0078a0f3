"""What the MovieLens 100K pipeline benchmarks share: where the licensed files are, and the source's config."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ml-100k"


def source_config(overrides: Sequence[str]) -> Callable:
    """config(*extra) -> the local profile + conf/sources/movielens.yaml + overrides + extra (later keys win), so
    each stage of a benchmark can add its own keys over one base."""
    from lakerec.config import load_config

    def config(*extra: str):
        return load_config("local", [*overrides, *extra], [str(REPO / "conf" / "sources" / "movielens.yaml")],
                           conf_dir=REPO / "conf")
    return config
