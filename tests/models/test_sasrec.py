"""SASRec: causality, padding, shapes and the tied output."""
import pytest
import torch

from lakerec.models.sasrec import SASRec, SASRecConfig
from lakerec.train.losses import full_softmax_ce


def ce_loss(model, inputs, targets):
    hidden, y = model.training_pairs(inputs, targets)
    return full_softmax_ce(hidden, model.item_vectors(), y)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SASRec(SASRecConfig(n_items=30, max_len=8, dim=16, layers=2, heads=2, dropout=0.0)).eval()


@pytest.mark.parametrize("norm_first", [True, False])
def test_changing_a_later_item_leaves_earlier_outputs_unchanged(norm_first):
    torch.manual_seed(0)
    net = SASRec(SASRecConfig(n_items=30, max_len=8, dim=16, layers=2, heads=2, dropout=0.0,
                              norm_first=norm_first)).eval()
    a = torch.tensor([[0, 0, 3, 7, 9, 2, 5, 11]])
    b = a.clone()
    b[0, 5] = 21  # change position 5
    with torch.no_grad():
        ha, hb = net(a), net(b)
    assert torch.allclose(ha[:, :5], hb[:, :5], atol=1e-6)
    assert not torch.allclose(ha[:, 5:], hb[:, 5:], atol=1e-4)


def test_padding_is_inert_and_never_nan(model):
    with torch.no_grad():
        h = model(torch.tensor([[0, 0, 0, 0, 0, 4, 5, 6], [0] * 8]))
    assert torch.isfinite(h).all()
    assert h[0, :5].abs().sum() == 0 and h[1].abs().sum() == 0
    # the padding prefix does not change what real positions see: a shorter pad is the same user
    with torch.no_grad():
        again = model(torch.tensor([[0, 0, 0, 0, 0, 4, 5, 6]]))
    assert torch.allclose(h[0], again[0])


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_a_short_batch_gives_what_the_same_rows_give_beside_a_full_one(name):
    """forward cuts the columns that are padding in every row: the outputs must not depend on the cut."""
    from lakerec.models import build_model

    torch.manual_seed(0)
    net = build_model(SASRecConfig(n_items=30, max_len=8, dim=16, layers=2, heads=2, dropout=0.0, name=name)).eval()
    short = torch.tensor([[0, 0, 0, 0, 0, 4, 5, 6], [0, 0, 0, 0, 0, 0, 9, 2]])  # 5 columns can be cut
    full = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])  # nothing can be cut
    with torch.no_grad():
        alone = net(short)
        beside = net(torch.cat([short, full]))[:2]
    assert alone.shape == (2, 8, 16)
    assert alone[:, :5].abs().sum() == 0
    assert torch.allclose(alone, beside, atol=1e-5)


def test_training_pairs_are_every_non_padding_position(model):
    inputs = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 0, 7, 8]])
    targets = torch.tensor([[0, 0, 0, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0, 8, 9]])
    with torch.no_grad():
        hidden, y = model.training_pairs(inputs, targets)
        full = model(inputs)
    assert y.tolist() == [2, 3, 4, 5, 6, 8, 9]  # one pass, every position with a next item
    assert torch.equal(hidden, full[targets != 0])


def test_embeddings_start_small():
    torch.manual_seed(0)
    net = SASRec(SASRecConfig(n_items=500, max_len=8, dim=32))
    assert 0.015 < net.item_emb.weight[1:].std().item() < 0.025  # std 0.02, not PyTorch's default 1
    assert 0.015 < net.pos_emb.weight.std().item() < 0.025


def test_user_and_item_vectors_make_scores_and_loss_ignores_padding(model):
    inputs = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5]])
    with torch.no_grad():
        users = model.user_vectors(inputs)
        items = model.item_vectors()
    assert users.shape == (1, 16) and items.shape == (31, 16)
    assert items[0].abs().sum() == 0  # padding row
    model.train()
    targets = torch.tensor([[0, 0, 0, 2, 3, 4, 5, 6]])
    loss = ce_loss(model, inputs, targets)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert model.item_emb.weight.grad[0].abs().sum() == 0  # padding_idx gets no gradient


def test_training_steps_learn_a_fixed_successor():
    torch.manual_seed(0)
    net = SASRec(SASRecConfig(n_items=10, max_len=4, dim=16, layers=1, heads=1, dropout=0.0))
    inputs = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    targets = inputs % 10 + 1
    opt = torch.optim.AdamW(net.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = ce_loss(net, inputs, targets)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 10


def test_config_rejects_a_dim_the_heads_cannot_split():
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(n_items=5, max_len=4, dim=10, heads=3)
    cfg = SASRecConfig(n_items=5, max_len=4, dim=12, heads=3)
    assert SASRecConfig.from_dict(cfg.to_dict()) == cfg
