"""train.item_dropout: a share of the input items' embeddings zeroed per training step, never at inference."""
import pytest
import torch

from lakerec.models import build_model, model_config
from lakerec.models.base import ModelConfig

N_ITEMS = 50


def net(name: str = "sasrec", p: float = 0.3):
    torch.manual_seed(0)
    return build_model(ModelConfig(n_items=N_ITEMS, max_len=8, dim=16, layers=1, heads=2, dropout=0.0, name=name,
                                   item_dropout=p))


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "bsarec"])
def test_off_at_eval_and_on_in_training(name):
    model, plain = net(name, 0.3), net(name, 0.0)
    inputs = torch.tensor([[0, 0, 3, 7, 9, 2, 5, 11], [1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(model.eval()(inputs), plain.eval()(inputs))  # same weights, no dropout at eval
        assert torch.equal(model.user_vectors(inputs), plain.user_vectors(inputs))
        torch.manual_seed(1)
        trained_view = model.train()(inputs)
        assert not torch.allclose(trained_view, plain.train()(inputs))  # dropout=0.0: only item_dropout differs


def test_the_rate_is_respected_on_real_items_only_and_kept_items_are_rescaled():
    model = net("bert4rec", 0.3).train()
    ids = torch.randint(1, N_ITEMS + 2, (500, 8))  # N_ITEMS + 1 is BERT4Rec's [MASK]
    ids[:, :2] = 0  # padding
    items = torch.ones(500, 8, 4)
    torch.manual_seed(0)
    out = model.drop_items(items, ids)[..., 0]
    real = (ids > 0) & (ids <= N_ITEMS)
    dropped = (out == 0) & real
    share = dropped.sum().item() / real.sum().item()
    assert 0.28 < share < 0.32  # about 2,900 items: the share lies within 2 points of 0.3
    assert torch.allclose(out[real & ~dropped], torch.tensor(1 / 0.7))  # dropout's rescaling of the rest
    assert (out[~real] == 1).all()  # padding rows pass through (zero already), [MASK] is never dropped


def test_the_drop_is_deterministic_for_a_seed():
    model = net("sasrec", 0.5).train()
    ids = torch.randint(1, N_ITEMS + 1, (64, 8))
    items = torch.ones(64, 8, 4)
    torch.manual_seed(7)
    first = model.drop_items(items, ids)
    torch.manual_seed(7)
    again = model.drop_items(items, ids)
    torch.manual_seed(8)
    other = model.drop_items(items, ids)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_the_key_reaches_the_model(make_cfg):
    assert model_config(make_cfg("train.item_dropout=0.25"), n_items=5).item_dropout == 0.25
    assert model_config(make_cfg(), n_items=5).item_dropout == 0.0  # off by default
    with pytest.raises(ValueError, match="item_dropout"):
        ModelConfig(n_items=5, max_len=4, item_dropout=1.0)
