"""BSARec: the causal filter beside attention (shapes, causality, padding, a loss computed by hand, learning)."""
import math

import pytest
import torch
import torch.nn.functional as F

from lakerec.models import build_model, model_config
from lakerec.models.base import ModelConfig
from lakerec.models.bsarec import BSARec, causal_lowpass
from lakerec.train.losses import full_softmax_ce, make_loss


def config(**kw) -> ModelConfig:
    base = dict(n_items=30, max_len=8, dim=16, layers=2, heads=2, dropout=0.0, name="bsarec", bsarec_alpha=0.7,
                bsarec_window=3)
    return ModelConfig(**{**base, **kw})


@pytest.fixture
def model():
    torch.manual_seed(0)
    return BSARec(config()).eval()


def test_causal_lowpass_is_the_mean_of_the_last_window_real_positions():
    x = torch.tensor([[[9.0], [9.0], [1.0], [3.0], [8.0], [4.0]]])  # two padding positions, then 1, 3, 8, 4
    real = torch.tensor([[False, False, True, True, True, True]])
    low = causal_lowpass(x, real, window=3)
    # padding: 0; then mean(1), mean(1, 3), mean(1, 3, 8), mean(3, 8, 4): the padding's 9s never count
    assert low.flatten().tolist() == pytest.approx([0, 0, 1, 2, 4, 5])


def test_shapes_and_the_name_builds_it(model, make_cfg):
    inputs = torch.tensor([[0, 0, 3, 7, 9, 2, 5, 11], [1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        assert model(inputs).shape == (2, 8, 16)
        assert model.user_vectors(inputs).shape == (2, 16)
    assert model.item_vectors().shape == (31, 16)
    cfg = make_cfg("train.model=bsarec", "train.bsarec.alpha=0.4", "train.bsarec.window=5")
    built = build_model(model_config(cfg, n_items=12))
    assert isinstance(built, BSARec)
    assert [(layer.alpha, layer.window) for layer in built.encoder.layers] == [(0.4, 5)] * cfg.train.layers
    assert ModelConfig.from_dict(built.config.to_dict()) == built.config


@pytest.mark.parametrize("norm_first", [True, False])
def test_changing_a_later_item_leaves_earlier_outputs_unchanged(norm_first):
    """The original's FFT filter would fail this: every position's low-pass reads the whole window."""
    torch.manual_seed(0)
    net = BSARec(config(norm_first=norm_first, bsarec_alpha=0.9)).eval()
    a = torch.tensor([[0, 0, 3, 7, 9, 2, 5, 11]])
    b = a.clone()
    b[0, 5] = 21
    with torch.no_grad():
        ha, hb = net(a), net(b)
    assert torch.allclose(ha[:, :5], hb[:, :5], atol=1e-6)
    assert not torch.allclose(ha[:, 5:], hb[:, 5:], atol=1e-4)


def test_padding_is_masked_in_attention_and_filter(model):
    inputs = torch.tensor([[0, 0, 0, 0, 0, 4, 5, 6], [0] * 8])
    with torch.no_grad():
        h = model(inputs)
        model.pos_emb.weight[:5] += torch.randn(5, 16)  # other states at the padding positions (never zero inside)
        moved = model(inputs)
    assert torch.isfinite(h).all()
    assert h[0, :5].abs().sum() == 0 and h[1].abs().sum() == 0
    assert torch.allclose(h[0, 5:], moved[0, 5:], atol=1e-6)  # neither attention nor the low-pass reads padding


def test_training_loss_by_hand_on_a_tiny_case():
    """One pre-LN block, one head: the forward pass written out here from the weights, then the softmax CE."""
    torch.manual_seed(1)
    c = ModelConfig(n_items=5, max_len=4, dim=4, layers=1, heads=1, dropout=0.0, name="bsarec", bsarec_alpha=0.6,
                    bsarec_window=2)
    net = BSARec(c).train()
    inputs = torch.tensor([[0, 1, 2, 3], [4, 2, 5, 1]])
    targets = torch.tensor([[0, 2, 3, 4], [2, 5, 1, 3]])
    hidden, y = net.training_pairs(inputs, targets)
    loss = full_softmax_ce(hidden, net.item_vectors(), y)

    layer, E = net.encoder.layers[0], net.item_emb.weight
    with torch.no_grad():
        expected = []
        for row in range(2):
            ids = inputs[row].tolist()
            x = torch.stack([E[i] * 2.0 + net.pos_emb.weight[t] for t, i in enumerate(ids)])  # sqrt(dim) = 2
            src = F.layer_norm(x, (4,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
            wq, wk, wv = layer.self_attn.in_proj_weight.chunk(3)
            bq, bk, bv = layer.self_attn.in_proj_bias.chunk(3)
            q, k, v = src @ wq.T + bq, src @ wk.T + bk, src @ wv.T + bv
            real = [i != 0 for i in ids]
            out = []
            for t in range(4):
                keys = [s for s in range(t + 1) if real[s] or s == t]  # the past, not padding (itself always)
                w = torch.softmax(torch.stack([q[t] @ k[s] / 2.0 for s in keys]), 0)  # sqrt(head dim) = 2
                att = sum(wi * v[s] for wi, s in zip(w, keys)) @ layer.self_attn.out_proj.weight.T \
                    + layer.self_attn.out_proj.bias
                window = [s for s in (t - 1, t) if s >= 0 and real[s]]
                low = sum(src[s] for s in window) / len(window) if window else torch.zeros(4)
                filtered = low + layer.sqrt_beta ** 2 * (src[t] - low)
                out.append(x[t] + 0.6 * filtered + 0.4 * att)
            x1 = torch.stack(out)
            ln2 = F.layer_norm(x1, (4,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
            x2 = x1 + F.gelu(ln2 @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T \
                + layer.linear2.bias
            h = F.layer_norm(x2, (4,), net.final_norm.weight, net.final_norm.bias, net.final_norm.eps)
            for t in range(4):
                if targets[row, t]:
                    logits = h[t] @ E[1:6].T
                    expected.append(-torch.log_softmax(logits, 0)[targets[row, t] - 1])
        by_hand = torch.stack(expected).mean()
    assert y.tolist() == [2, 3, 4, 2, 5, 1, 3]
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    loss.backward()
    assert layer.sqrt_beta.grad.abs().sum() > 0  # the filter's beta learns


@pytest.mark.parametrize("loss_kind", ["ce", "sampled"])
def test_training_steps_learn_a_fixed_successor(loss_kind):
    torch.manual_seed(0)
    net = BSARec(config(n_items=10, max_len=4, layers=1, heads=1, bsarec_window=2))
    inputs = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    targets = inputs % 10 + 1
    loss_fn = make_loss(loss_kind, 5, torch.ones(11))
    opt = torch.optim.AdamW(net.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        hidden, y = net.training_pairs(inputs, targets)
        loss = loss_fn(hidden, net.item_vectors(), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5
