"""BERT4Rec: only masked positions are predicted, attention is bidirectional, inference appends a [MASK]."""
import pytest
import torch

from lakerec.models import MODELS, build_model, model_config
from lakerec.models.base import ModelConfig
from lakerec.models.bert4rec import BERT4Rec
from lakerec.train.losses import full_softmax_ce

N_ITEMS, L = 30, 8


@pytest.fixture
def model():
    torch.manual_seed(0)
    return BERT4Rec(ModelConfig(n_items=N_ITEMS, max_len=L, dim=16, layers=2, heads=2, dropout=0.0,
                                name="bert4rec", mask_prob=0.3))


def test_only_masked_positions_are_predicted(model):
    items = torch.tensor([[0, 0, 3, 7, 9, 2, 5, 11], [0, 0, 0, 0, 0, 0, 4, 6], [1, 2, 3, 4, 5, 6, 7, 8]])
    seen = torch.zeros_like(items, dtype=torch.bool)
    for seed in range(20):
        torch.manual_seed(seed)
        masked = model.mask_items(items)
        torch.manual_seed(seed)
        hidden, targets = model.training_pairs(torch.zeros_like(items), items)
        assert not (masked & (items == 0)).any()  # padding is never masked
        assert masked.any(dim=1).all()  # every row has at least one masked item
        assert targets.tolist() == items[masked].tolist()  # the targets are exactly the masked items ...
        with torch.no_grad():
            expected = model(items.masked_fill(masked, model.mask_token))[masked]
        assert torch.allclose(hidden, expected)  # ... predicted from the input with [MASK] in their place
        seen |= masked
    assert seen[items != 0].all()  # over seeds, every real position gets masked sometimes


def test_attention_is_bidirectional_and_padding_inert(model):
    model.eval()
    a = torch.tensor([[0, 0, 3, 7, 9, 2, 5, 11]])
    b = a.clone()
    b[0, 6] = 21
    with torch.no_grad():
        ha, hb = model(a), model(b)
    assert not torch.allclose(ha[:, 2:6], hb[:, 2:6], atol=1e-4)  # earlier positions see later items
    assert ha[0, :2].abs().sum() == 0 and torch.isfinite(ha).all()


def test_user_vector_is_a_mask_appended_after_the_newest_item(model):
    model.eval()
    history = torch.tensor([[0, 0, 3, 7, 9, 2, 5, 11]])
    with torch.no_grad():
        users = model.user_vectors(history)
        direct = model(torch.tensor([[0, 3, 7, 9, 2, 5, 11, N_ITEMS + 1]]))[:, -1]
    assert torch.equal(users, direct)
    assert model.item_vectors().shape == (N_ITEMS + 1, 16)  # [MASK] is never a recommendation


def test_learns_to_fill_in_a_fixed_successor():
    torch.manual_seed(0)
    net = BERT4Rec(ModelConfig(n_items=10, max_len=4, dim=32, layers=1, heads=1, dropout=0.0, name="bert4rec",
                               mask_prob=0.5))
    items = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [2, 3, 4, 5], [6, 7, 8, 9]])
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    for _ in range(400):
        opt.zero_grad()
        hidden, y = net.training_pairs(items, items)
        full_softmax_ce(hidden, net.item_vectors(), y).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        top = (net.user_vectors(torch.tensor([[1, 2, 3, 4], [4, 5, 6, 7]])) @ net.item_vectors()[1:].T).argmax(1) + 1
    assert top.tolist() == [5, 8]


def test_build_model_by_name_from_the_config(make_cfg):
    for name, cls in MODELS.items():
        cfg = make_cfg(f"train.model={name}", "train.mask_prob=0.4")
        config = model_config(cfg, n_items=12)
        net = build_model(config)
        assert type(net) is cls and config.mask_prob == 0.4 and config.max_len == cfg.sequences.max_len
        assert net.item_vectors().shape == (13, cfg.train.dim)
    with pytest.raises(ValueError, match="unknown model"):
        ModelConfig(n_items=3, max_len=4, name="gru4rec")
