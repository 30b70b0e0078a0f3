"""The pipeline with the text-aware model and a cold-start holdout, through the real CLI: embed -> train (text)
-> evaluate -> score on tiny demo data; the registered model carries its text, the cold slice is evaluated."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from jobs.cli import main
from lakerec import tables as T
from lakerec import tracking
from lakerec.config import load_config
from lakerec.lake import Lake
from lakerec.models.registry import load_model
from tests.conftest import CONF_DIR

pytestmark = pytest.mark.slow


def test_text_aware_pipeline_with_holdout(spark, tmp_path):
    root = tmp_path / "lake"
    overrides = [f"lake.root={root}", "train.text.enabled=true", "sequences.holdout.protocol=random",
                 "sequences.holdout.share=0.2", "evaluate.baselines=[pop]"]
    args = ["run", "--profile", "test", *(x for o in overrides for x in ("--set", o))]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "[embed] done" in result.output and "holdout_items=" in result.output
    assert "test.sasrec.ndcg_10=" in result.output

    cfg = load_config("test", overrides, conf_dir=CONF_DIR)
    tracking.setup(cfg)
    model, meta = load_model((cfg.mlflow.registered_model, "1"))
    assert (model.config.text_dim, model.config.text_encoder) == (384, "all-MiniLM-L6-v2")
    assert model.text_emb[1:].abs().sum(1).gt(0).all()  # every demo item has its text in the registered model
    held_out = int(cfg.sequences.holdout.share * len(meta["item_ids"]) + 0.999)
    assert int((model.id_known[1:len(meta["item_ids"]) + 1] == 0).sum()) >= held_out  # text only, never trained
    lake = Lake(str(root), spark)
    assert lake.read(T.GOLD_TOPN).count() > 0
