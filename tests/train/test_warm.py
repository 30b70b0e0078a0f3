"""Warm start on hand-made data: the item index grows by appending, the parent's weights are carried over exactly,
the new windows are told from the old, the lineage tags, and a parent that cannot be grown is refused."""
import pytest
import torch

from jobs import sequences as sequences_job
from lakerec import tables as T
from lakerec import tracking
from lakerec.config import SequencesConf
from lakerec.context import run_stage
from lakerec.data.sequences import build_item_index, build_sequences, build_train_windows, item_ids_in_order, warm_windows
from lakerec.lake import Lake
from lakerec.models import build_model
from lakerec.models.base import ModelConfig
from lakerec.models.registry import log_model
from lakerec.train.warm import (INIT_TAG, PARENT_TAG, TRAIN_KEY_TAG, Parent, WarmStartError, check_compatible,
                                grown_state, lineage, load_parent)
from tests.data.helpers import EVENTS_SCHEMA, event_rows, own_mlflow_store, write_silver

N_OLD, N_NEW = 6, 9


def parent_model(name: str = "sasrec", text_dim: int = 0, n_items: int = N_OLD):
    torch.manual_seed(3)
    model = build_model(ModelConfig(n_items=n_items, max_len=5, dim=8, layers=1, heads=2, name=name,
                                    text_dim=text_dim, text_encoder="enc" if text_dim else None))
    with torch.no_grad():  # non-default values everywhere, so a copied tensor cannot match by accident
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def grown_config(parent, n_items: int = N_NEW) -> ModelConfig:
    return ModelConfig.from_dict({**parent.config.to_dict(), "n_items": n_items})


@pytest.mark.slow
def test_the_sequences_stage_keeps_old_item_ids_and_appends_new_ones(spark, make_cfg):
    with own_mlflow_store():
        cfg = make_cfg("train.ranks=1", "refresh.skip_done=true")
        lake = Lake(cfg.lake.root, spark)
        write_silver(spark, lake, event_rows({"u1": ["B", "D", "C"], "u2": ["D", "C", "B"]}), ["B", "C", "D"])
        run_stage("sequences", sequences_job.run, cfg, spark)
        assert item_ids_in_order(lake.read(T.SILVER_ITEM_INDEX)) == ["B", "C", "D"]
        # a new day: "A" sorts before every old item, "E" after; both must come after the old ones
        write_silver(spark, lake, event_rows({"u1": ["B", "D", "C", "E"], "u2": ["D", "C", "B", "A"]}),
                     ["A", "B", "C", "D", "E"])
        second = run_stage("sequences", sequences_job.run, cfg, spark)
        assert item_ids_in_order(lake.read(T.SILVER_ITEM_INDEX)) == ["B", "C", "D", "A", "E"]
        assert second.metrics["items_added"] == 2 and second.metrics["items"] == 5
        versions = {t: lake.version(t) for t in (T.SILVER_ITEM_INDEX, T.SILVER_SEQUENCES, T.SILVER_TRAIN_WINDOWS)}
        again = run_stage("sequences", sequences_job.run, cfg, spark)  # the same inputs: nothing to do
        assert again.skipped and "already built" in again.skipped
        assert {t: lake.version(t) for t in versions} == versions


def test_build_item_index_numbers_only_the_new_items_after_the_largest(spark):
    events = spark.createDataFrame(event_rows({"u": ["x", "b", "a"]}), EVENTS_SCHEMA)
    items = spark.createDataFrame([("z",)], f"{T.ITEM_ID} string")
    previous = spark.createDataFrame([("b", 1), ("q", 2)], f"{T.ITEM_ID} string, {T.ITEM_IDX} int")
    added = build_item_index(events, items, previous).orderBy(T.ITEM_IDX).collect()
    assert [(r[T.ITEM_ID], r[T.ITEM_IDX]) for r in added] == [("a", 3), ("x", 4), ("z", 5)]


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_grown_state_is_the_parents_weights_plus_rows_for_the_new_items(name):
    parent = parent_model(name)
    config = grown_config(parent)
    state = grown_state(parent, config)
    before = parent.state_dict()
    assert set(state) == set(before)
    for key, tensor in before.items():
        if key != "item_emb.weight":
            assert torch.equal(state[key], tensor), key
    emb, old = state["item_emb.weight"], before["item_emb.weight"]
    extra = old.shape[0] - (N_OLD + 1)  # BERT4Rec's [MASK]: it stays the last row
    assert emb.shape[0] == N_NEW + 1 + extra
    assert torch.equal(emb[: N_OLD + 1], old[: N_OLD + 1])
    assert torch.equal(emb[N_NEW + 1:], old[N_OLD + 1:])
    mean = old[1: N_OLD + 1].mean(dim=0)
    assert all(torch.allclose(emb[i], mean) for i in range(N_OLD + 1, N_NEW + 1))

    grown = build_model(config)
    grown.load_state_dict(state)  # loads exactly: strict, every shape matches
    grown.eval()
    histories = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 7, 8, 9]])  # old items, and new ones
    with torch.no_grad():
        scores = grown.user_vectors(histories) @ grown.item_vectors().T
        old_scores = parent.user_vectors(histories[:1]) @ parent.item_vectors().T
    assert scores.shape == (2, N_NEW + 1) and torch.isfinite(scores).all()
    assert torch.allclose(scores[0, : N_OLD + 1], old_scores[0], atol=1e-5)  # the old items score as before


def test_a_text_aware_parent_gives_new_items_their_text_vector():
    parent = parent_model(text_dim=4)
    text = torch.nn.functional.normalize(torch.randn(N_NEW + 1, 4), dim=1)
    parent.set_item_text(text[: N_OLD + 1])
    state = grown_state(parent, grown_config(parent), text.numpy())
    with torch.no_grad():
        expected = parent.item_vectors_from_text(text[N_OLD + 1:])
    assert torch.allclose(state["item_emb.weight"][N_OLD + 1:], expected)
    assert state["id_known"][N_OLD + 1: N_NEW + 1].sum() == 0 and state["id_known"][1: N_OLD + 1].all()


def _parent(model, item_ids, version="7", index_version="2") -> Parent:
    return Parent(version, model, {"model_name": "lakerec-model", "item_ids": item_ids,
                                   "tags": {f"read.{T.SILVER_ITEM_INDEX}": index_version,
                                            f"read.{T.SILVER_SEQUENCES}": "4", "lakerec.pipeline_run": "p"}})


def test_a_parent_on_another_index_or_architecture_is_refused_naming_both():
    model = parent_model(n_items=3)
    parent = _parent(model, ["a", "b", "c"])
    check_compatible(parent, grown_config(model, 4), ["a", "b", "c", "d"], 5)  # grown by appending: fine
    with pytest.raises(WarmStartError, match=r"lakerec-model v7 .*silver.item_index v2.*silver.item_index v5"
                                             r".*item_idx 2 is 'b' in the parent but 'c' now"):
        check_compatible(parent, grown_config(model, 4), ["a", "c", "b", "d"], 5)
    with pytest.raises(WarmStartError, match="item_idx 3 is 'c' in the parent but absent now"):
        check_compatible(parent, grown_config(model, 2), ["a", "b"], 5)
    wider = ModelConfig.from_dict({**grown_config(model, 4).to_dict(), "dim": 16, "heads": 2})
    with pytest.raises(WarmStartError, match=r"v7 .*another architecture.*'dim': \(8, 16\)"):
        check_compatible(parent, wider, ["a", "b", "c", "d"], 5)


def test_lineage_tags_name_the_parent_and_the_tables_of_both_runs():
    parent = _parent(parent_model(), list("abcdef"))
    tags = lineage(parent, "champion", "k1")
    assert tags == {INIT_TAG: "champion", TRAIN_KEY_TAG: "k1", PARENT_TAG: "7",
                    f"parent.read.{T.SILVER_ITEM_INDEX}": "2", f"parent.read.{T.SILVER_SEQUENCES}": "4"}
    assert lineage(None, "scratch", "k2") == {INIT_TAG: "scratch", TRAIN_KEY_TAG: "k2"}


def test_a_missing_parent_is_an_error_naming_the_model_and_what_was_asked(make_cfg):
    with own_mlflow_store():
        cfg = make_cfg()
        tracking.setup(cfg)
        with pytest.raises(WarmStartError, match=r"train.init=champion: registered model 'lakerec-model' has no "
                                                 r"alias 'champion'"):
            load_parent(cfg.mlflow.registered_model, "champion", "champion")
        with tracking.stage_run(cfg, "train"):
            log_model(parent_model(), list("abcdef"), cfg.mlflow.registered_model)
        assert load_parent(cfg.mlflow.registered_model, 1, "champion").version == "1"
        with pytest.raises(WarmStartError, match="train.init=5: registered model 'lakerec-model' has no version 5"):
            load_parent(cfg.mlflow.registered_model, 5, "champion")


@pytest.mark.slow
def test_new_windows_hold_a_target_the_parent_never_trained_on_and_replay_is_a_seeded_share(spark):
    conf = SequencesConf(max_len=4, min_events=3, window_stride=2)
    items = [f"i{k}" for k in range(20)]
    before = {"a": items[:10], "b": items[10:15]}
    now = {"a": items[:12], "b": items[10:15], "c": items[15:20]}  # a: two more events, b: none, c: a new user

    def sequences(histories):
        events = spark.createDataFrame(event_rows(histories), EVENTS_SCHEMA)
        index = build_item_index(events, spark.createDataFrame([(i,) for i in items], f"{T.ITEM_ID} string"))
        return build_sequences(events, index, conf)

    current, parent = sequences(now), sequences(before)
    windows = build_train_windows(current, conf)
    # a: m = 10 training items -> windows 0..3 end at target positions 9, 7, 5, 4; m_old = 8: only window 0 is new
    new, replay = warm_windows(windows, current, parent, conf, 0.5, seed=1)
    assert sorted((r[T.USER_ID], r[T.WINDOW]) for r in new.collect()) == [("a", 0), ("c", 0)]
    old = {("a", 1), ("a", 2), ("a", 3), ("b", 0)}
    picked = {(r[T.USER_ID], r[T.WINDOW]) for r in replay.collect()}
    assert len(picked) == 2 and picked <= old  # half of the whole: as many as the new ones
    assert picked == {(r[T.USER_ID], r[T.WINDOW]) for r in warm_windows(windows, current, parent, conf, 0.5, 1)[1]
                      .collect()}
    assert warm_windows(windows, current, parent, conf, 0.0, 1)[1].count() == 0
    assert warm_windows(windows, current, parent, conf, 0.9, 1)[1].count() == len(old)  # capped by what exists
    assert new.columns == windows.columns
    # with prefixes, a's windows end at 9, 7, 5, 3, 1 and c's at 2, 1: the same rule marks what is new
    prefixes = conf.model_copy(update={"prefixes": True})
    new = warm_windows(build_train_windows(current, prefixes), current, parent, prefixes, 0.5, seed=1)[0]
    assert sorted((r[T.USER_ID], r[T.WINDOW]) for r in new.collect()) == [("a", 0), ("c", 0), ("c", 1)]
