"""Text-aware items: ID + projected text, text alone for items without ID history, carried by the registry."""
import functools

import numpy as np
import pytest
import torch

from lakerec.models import build_model
from lakerec.models.base import ModelConfig
from lakerec.models.registry import load_model, log_model
from lakerec.train.losses import full_softmax_ce
from tests.data.helpers import lake_run, own_mlflow_store

N_ITEMS, TEXT_DIM, MAX_LEN = 20, 16, 6
GROUP = np.array([0] + [i % 2 for i in range(1, N_ITEMS + 1)])  # item i belongs to group i % 2 (0 = padding)
COLD = [20, 19]  # the cold item of group 0, of group 1: never trained on


def group_text(seed: int = 0) -> torch.Tensor:
    """Unit text vectors: a group direction plus item noise (what a sentence encoder gives similar items)."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(2, TEXT_DIM))
    text = directions[GROUP] + 0.3 * rng.normal(size=(N_ITEMS + 1, TEXT_DIM))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    text[0] = 0
    return torch.as_tensor(text, dtype=torch.float32)


def config(name: str = "sasrec", fusion: str = "gate") -> ModelConfig:
    return ModelConfig(n_items=N_ITEMS, max_len=MAX_LEN, dim=16, layers=1, heads=2, dropout=0.0, name=name,
                       text_dim=TEXT_DIM, text_fusion=fusion, id_dropout=0.3, text_encoder="test-encoder")


def same_group_sequences(rng: np.random.Generator, rows: int) -> torch.Tensor:
    """Each row: MAX_LEN + 1 warm items of one group (the cold items never appear)."""
    warm = {g: [i for i in range(1, N_ITEMS + 1) if GROUP[i] == g and i not in COLD] for g in (0, 1)}
    return torch.as_tensor(np.stack([rng.choice(warm[g], MAX_LEN + 1) for g in rng.integers(0, 2, rows)]))


@functools.lru_cache(maxsize=None)
def trained(name: str = "sasrec", fusion: str = "gate"):
    torch.manual_seed(0)
    model = build_model(config(name, fusion))
    known = torch.ones(N_ITEMS + 1, dtype=torch.bool)
    known[COLD] = False
    model.set_item_text(group_text(), known)
    opt = torch.optim.AdamW(model.parameters(), lr=0.02)
    rng = np.random.default_rng(0)
    for _ in range(80):
        seqs = same_group_sequences(rng, 32)
        hidden, y = model.training_pairs(seqs[:, :-1], seqs[:, 1:])
        opt.zero_grad()
        full_softmax_ce(hidden, model.item_vectors(), y, model.excluded_from_training()).backward()
        opt.step()
    return model.eval()  # cached: callers must not modify it


@pytest.mark.parametrize("name,fusion", [("sasrec", "gate"), ("sasrec", "sum"), ("bert4rec", "gate"),
                                         ("bsarec", "gate")])
def test_an_item_without_id_history_is_scored_from_its_text(name, fusion):
    model = trained(name, fusion)
    histories = same_group_sequences(np.random.default_rng(1), 200)[:, 1:]
    with torch.no_grad():
        vectors = model.item_vectors()
        assert torch.allclose(vectors[COLD], model.item_vectors_from_text(model.text_emb[COLD]), atol=1e-6)
        scores = model.user_vectors(histories) @ vectors.T
    groups = torch.as_tensor(GROUP)[histories[:, -1]]
    same_cold = torch.as_tensor(COLD)[groups]  # the cold item of the user's group
    other_cold = torch.as_tensor(COLD)[1 - groups]
    rows = torch.arange(len(histories))
    assert (scores[rows, same_cold] > scores[rows, other_cold]).float().mean() > 0.9


def test_an_item_without_its_id_gets_its_whole_projected_text_not_a_gated_half():
    """The gate mixes two halves; with the ID missing (no history, or dropped in training) there is nothing to mix,
    and a gated text vector would be shrunk below the warm items' scale (the cold slice then never ranks)."""
    torch.manual_seed(0)
    model = build_model(config("sasrec", "gate"))
    with torch.no_grad():
        model.gate.bias.fill_(3.0)  # a gate leaning on IDs: sigmoid(3) = 0.95 of the ID, 0.05 of the text
        known = torch.ones(N_ITEMS + 1, dtype=torch.bool)
        known[COLD] = False
        model.set_item_text(group_text(), known)
        text = model.text_proj(model.text_emb)
        vectors = model.eval().item_vectors()
        assert torch.allclose(vectors[COLD], text[COLD], atol=1e-6)
        warm = [i for i in range(1, N_ITEMS + 1) if i not in COLD]
        assert not torch.allclose(vectors[warm], text[warm], atol=1e-3)  # warm items keep their gated ID
        model.train()
        dropped = (model.item_vectors() - text).abs().sum(-1) < 1e-6  # id_dropout 0.3: about 6 of 20 items
        assert dropped[COLD].all() and 0 < int(dropped[warm].sum()) < len(warm)


def test_text_only_vectors_for_new_items_and_id_only_models_refuse():
    model = trained()
    new_items = group_text(seed=5)[[1, 2]]  # two items outside the model's index
    with torch.no_grad():
        vectors = model.item_vectors_from_text(new_items)
    assert vectors.shape == (2, 16) and torch.isfinite(vectors).all()
    with pytest.raises(ValueError, match="text embeddings"):
        model.item_vectors_from_text(torch.zeros(2, TEXT_DIM + 1))
    id_only = build_model(ModelConfig(n_items=N_ITEMS, max_len=MAX_LEN, dim=16, layers=1, heads=2))
    with pytest.raises(ValueError, match="ID-only"):
        id_only.item_vectors_from_text(new_items)
    assert "text_emb" not in id_only.state_dict()  # the ID-only model is unchanged


def test_registry_carries_text_embeddings_and_projection(make_cfg):
    model = trained()
    inputs = same_group_sequences(np.random.default_rng(2), 4)[:, 1:]
    with torch.no_grad():
        before = model.user_vectors(inputs) @ model.item_vectors().T
    items = [f"m{i}" for i in range(1, N_ITEMS + 1)]
    with own_mlflow_store():
        cfg = make_cfg()
        with lake_run(cfg):
            name, version, _ = log_model(model, items, cfg.mlflow.registered_model)
        loaded, meta = load_model((name, version))
    assert loaded.config.text_encoder == "test-encoder" and loaded.config.text_dim == TEXT_DIM
    assert torch.equal(loaded.text_emb, model.text_emb) and torch.equal(loaded.id_known, model.id_known)
    with torch.no_grad():
        assert torch.equal(loaded.user_vectors(inputs) @ loaded.item_vectors().T, before)
        assert torch.equal(loaded.item_vectors_from_text(group_text()[COLD]), model.item_vectors_from_text(
            group_text()[COLD]))


def test_cold_item_vectors_for_catalog_items_outside_the_index():
    import pandas as pd

    from lakerec.text.embeddings import cold_item_vectors

    model = trained()
    text = group_text(seed=7)
    rows = pd.DataFrame({"item_id": ["m1", "new-a", "new-b"], "embedding": [text[1].numpy(), text[2].numpy(),
                                                                            text[3].numpy()]})
    ids, vectors = cold_item_vectors(model, rows, [f"m{i}" for i in range(1, N_ITEMS + 1)])
    assert ids == ["new-a", "new-b"]
    with torch.no_grad():
        assert torch.allclose(vectors, model.item_vectors_from_text(text[[2, 3]]))
