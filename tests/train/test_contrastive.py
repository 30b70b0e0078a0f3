"""train.contrastive (DuoRec-style InfoNCE): a value computed by hand, the partners, which windows take part, every
model and the text-aware path, and weight 0 training exactly as the loop did before the regulariser existed."""
import itertools
import math

import numpy as np
import pytest
import torch

from lakerec.config import ContrastiveConf
from lakerec.data.feed import steps_for, stream_batches
from lakerec.models import build_model
from lakerec.models.base import ModelConfig
from lakerec.train.losses import contrastive_loss, contrastive_partners, full_softmax_ce, info_nce
from lakerec.train.loop import _epoch_seed, _train_epoch, contrastive_term, lr_schedule, parameter_checksum

MAX_LEN, N_ITEMS = 8, 30


def nce(positive: float, negatives: list[float]) -> float:
    """One anchor's InfoNCE term: -log softmax of the positive among positive + negatives."""
    return -positive + math.log(math.exp(positive) + sum(math.exp(n) for n in negatives))


def test_info_nce_by_hand_dot_product_and_temperature():
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positive = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    # z = a1, a2, p1, p2; temperature 0.5 doubles every dot product; a view is never its own negative
    rows = [nce(2, [0, 0]),  # a1: positive p1 (1), negatives a2 (0), p2 (0)
            nce(4, [0, 2]),  # a2: positive p2 (2), negatives a1 (0), p1 (1)
            nce(2, [2, 4]),  # p1: positive a1 (1), negatives a2 (1), p2 (2)
            nce(4, [0, 4])]  # p2: positive a2 (2), negatives a1 (0), p1 (2)
    assert info_nce(anchor, positive, 0.5).item() == pytest.approx(sum(rows) / 4, rel=1e-6)


def test_info_nce_by_hand_views_with_the_anchors_next_item_are_no_negatives():
    anchor, positive = torch.tensor([[1.0], [2.0], [-1.0]]), torch.tensor([[2.0], [1.0], [1.0]])
    labels = torch.tensor([5, 5, 7])  # rows 0 and 1 predict the same next item
    rows = [nce(2, [-1, 1]),  # a1: positive p1; a2 and p2 (same next item) left out; negatives a3, p3
            nce(2, [-2, 2]),  # a2: positive p2; negatives a3, p3
            nce(-1, [-1, -2, -2, -1]),  # a3: positive p3; negatives a1, a2, p1, p2
            nce(2, [-2, 2]),  # p1: positive a1; negatives a3, p3
            nce(2, [-1, 1]),  # p2: positive a2; negatives a3, p3
            nce(-1, [1, 2, 2, 1])]  # p3: positive a3; negatives a1, a2, p1, p2
    assert info_nce(anchor, positive, 1.0, labels=labels).item() == pytest.approx(sum(rows) / 6, rel=1e-6)
    unmasked = nce(2, [2, -1, 1, 1])  # a1 without labels: a2, a3, p2, p3 all negatives
    assert unmasked != pytest.approx(rows[0])
    assert info_nce(anchor, positive, 1.0).item() == pytest.approx(
        (unmasked + nce(2, [2, -2, 4, 2]) + nce(-1, [-1, -2, -2, -1]) + nce(2, [2, 4, -2, 2])
         + nce(2, [1, 2, -1, 1]) + nce(-1, [1, 2, 2, 1])) / 6, rel=1e-6)


def test_cosine_similarity_ignores_the_vectors_length():
    torch.manual_seed(0)
    a, p = torch.randn(5, 4), torch.randn(5, 4)
    assert info_nce(3 * a, p / 2, 0.2, "cos").item() == pytest.approx(info_nce(a, p, 0.2, "cos").item(), rel=1e-5)
    assert info_nce(3 * a, p, 0.2, "dot").item() != pytest.approx(info_nce(a, p, 0.2, "dot").item(), rel=1e-3)
    with pytest.raises(ValueError, match="similarity"):
        info_nce(a, p, 1.0, "l2")


def test_partners_share_the_next_item_or_are_the_row_itself():
    next_items = torch.tensor([4, 4, 9, 4, 7])
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        partner = contrastive_partners(next_items, same_target=True)
        assert partner[2] == 2 and partner[4] == 4  # nobody else predicts 9 or 7: their own second view
        for row in (0, 1, 3):
            assert partner[row] != row and next_items[partner[row]] == 4
        seen.add(int(partner[0]))
    assert seen == {1, 3}  # drawn at random among the rows with the same next item
    assert contrastive_partners(next_items, same_target=False).tolist() == [0, 1, 2, 3, 4]


def test_a_batch_of_one_contributes_zero_but_keeps_the_graph():
    anchor = torch.randn(1, 4, requires_grad=True)
    loss = contrastive_loss(anchor, anchor.detach(), torch.tensor([3]), 1.0)
    loss.backward()
    assert loss.item() == 0 and anchor.grad is not None


def windows(rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded [rows, MAX_LEN] inputs and their next-item targets, histories of 1..MAX_LEN items."""
    rng = np.random.default_rng(seed)
    inputs = np.zeros((rows, MAX_LEN), dtype=np.int64)
    targets = np.zeros((rows, MAX_LEN), dtype=np.int64)
    for r in range(rows):
        n = int(rng.integers(1, MAX_LEN + 1))
        seq = rng.integers(1, N_ITEMS + 1, n + 1)
        inputs[r, -n:], targets[r, -n:] = seq[:-1], seq[1:]
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def config(name: str, **kw) -> ModelConfig:
    return ModelConfig(**{**dict(n_items=N_ITEMS, max_len=MAX_LEN, dim=16, layers=2, heads=2, dropout=0.2,
                                 name=name), **kw})


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "bsarec"])
def test_the_first_view_is_the_user_vector_beside_the_same_training_pairs(name):
    torch.manual_seed(0)
    model = build_model(config(name, dropout=0.0)).train()
    inputs, targets = windows(6)
    torch.manual_seed(1)
    hidden, y, users = model.training_pairs_and_users(inputs, targets)
    torch.manual_seed(1)  # BERT4Rec's masks draw from the RNG: the same draw gives the same pairs
    ref_hidden, ref_y = model.training_pairs(inputs, targets)
    assert torch.equal(y, ref_y) and torch.allclose(hidden, ref_hidden, atol=1e-6)
    assert users.shape == (6, 16)
    assert torch.allclose(users, model.eval().user_vectors(inputs), atol=1e-5)  # dropout 0: train == eval


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "bsarec"])
def test_windows_without_history_or_next_item_take_no_part(name):
    """Dropout 0, so both views are deterministic: a batch with an empty window and one without a next item
    gives the loss of its three real windows, with no NaN from the empty one."""
    torch.manual_seed(0)
    model = build_model(config(name, dropout=0.0)).train()
    inputs, targets = windows(3)
    targets[:, -1] = torch.tensor([3, 4, 5])  # distinct next items: every row its own partner
    extra_in = torch.tensor([[0] * MAX_LEN, [0] * (MAX_LEN - 2) + [7, 8]])
    extra_tg = torch.tensor([[0] * MAX_LEN, [0] * (MAX_LEN - 2) + [8, 0]])
    conf = ContrastiveConf(weight=1.0, temperature=0.5)
    three = contrastive_term(model, inputs, targets, model.training_pairs_and_users(inputs, targets)[2], conf)
    both_in, both_tg = torch.cat([inputs, extra_in]), torch.cat([targets, extra_tg])
    five = contrastive_term(model, both_in, both_tg, model.training_pairs_and_users(both_in, both_tg)[2], conf)
    assert torch.isfinite(five) and five.item() == pytest.approx(three.item(), rel=1e-5) and three.item() > 0


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "bsarec"])
@pytest.mark.parametrize("text", [False, True])
def test_every_model_and_the_text_path_get_gradients_from_it(name, text):
    torch.manual_seed(0)
    model = build_model(config(name, text_dim=8 if text else 0, id_dropout=0.3 if text else 0.0)).train()
    if text:
        known = torch.ones(N_ITEMS + 1, dtype=torch.bool)
        known[N_ITEMS] = False
        model.set_item_text(torch.nn.functional.normalize(torch.randn(N_ITEMS + 1, 8), dim=1), known)
    inputs, targets = windows(16)
    _, _, users = model.training_pairs_and_users(inputs, targets)
    loss = contrastive_term(model, inputs, targets, users, ContrastiveConf(weight=0.1))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert model.item_emb.weight.grad.abs().sum() > 0 and model.pos_emb.weight.grad.abs().sum() > 0
    if text:
        assert model.text_proj.weight.grad.abs().sum() > 0


@pytest.fixture
def hvd():
    """Real Horovod, one rank in this process (what _train_epoch's allreduce needs)."""
    import horovod.torch as hvd

    hvd.init()
    yield hvd
    hvd.shutdown()


def epoch_zero(inputs: torch.Tensor, targets: torch.Tensor, conf) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Epoch 0's batches of these windows as the feed draws them (one row group, a buffer that holds it)."""
    steps = steps_for(len(inputs), conf.batch_size)
    passes = itertools.repeat([(inputs.numpy(), targets.numpy())])
    return list(stream_batches(passes, steps, conf.batch_size, len(inputs), np.random.default_rng([conf.seed, 0, 0]),
                               conf.length_buckets))


def todays_epoch(model, batches: list, conf, optimizer, scheduler) -> None:
    """The epoch loop as it was before train.contrastive (lakerec.train.loop._train_epoch at 11d9d89), epoch 0."""
    torch.manual_seed(_epoch_seed(conf.seed, 0, 0))
    model.train()
    for inputs, targets in batches:
        hidden, y = model.training_pairs(inputs, targets)
        loss = full_softmax_ce(hidden, model.item_vectors(), y, model.excluded_from_training())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "bsarec"])
def test_weight_zero_trains_bit_identically_to_the_loop_before_it(hvd, make_cfg, name):
    inputs, targets = windows(70, seed=3)

    def run(conf, reference: bool = False) -> str:
        torch.manual_seed(0)
        model = build_model(config(name, item_dropout=0.1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=conf.lr, weight_decay=conf.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(conf, steps))
        if reference:
            todays_epoch(model, epoch_zero(inputs, targets, conf), conf, optimizer, scheduler)
        else:
            _train_epoch(hvd, model, epoch_zero(inputs, targets, conf), steps, conf, 0, full_softmax_ce, optimizer,
                         scheduler, torch.device("cpu"))
        return parameter_checksum(model)

    conf = make_cfg(f"train.model={name}", "train.batch_size=16").train
    steps = steps_for(len(inputs), conf.batch_size)
    today = run(conf, reference=True)
    assert run(conf) == today
    # the other knobs do nothing while the weight is 0 (no second pass, no partner draw from the RNG) ...
    idle = make_cfg(f"train.model={name}", "train.batch_size=16", "train.contrastive.temperature=0.2",
                    "train.contrastive.positives=dropout", "train.contrastive.similarity=dot").train
    assert run(idle) == today
    # ... and a weight > 0 does train differently
    assert run(make_cfg(f"train.model={name}", "train.batch_size=16", "train.contrastive.weight=0.1").train) != today


def test_the_keys_reach_the_train_conf_and_are_checked(make_cfg):
    conf = make_cfg("train.contrastive.weight=0.1", "train.contrastive.temperature=0.5").train.contrastive
    assert (conf.weight, conf.temperature, conf.similarity, conf.positives) == (0.1, 0.5, "cos", "same_target")
    assert make_cfg().train.contrastive.weight == 0
    for bad in ("train.contrastive.weight=-0.1", "train.contrastive.temperature=0", "train.contrastive.positives=x"):
        with pytest.raises(Exception, match="contrastive"):
            make_cfg(bad)


def test_the_run_key_holds_the_term_only_while_it_is_on(make_cfg):
    """Off, train.contrastive is no part of the settings that key a run (checkpoints, a refresh's reuse of its
    version): a lake trained before the key existed keeps its keys. On, its settings tell two runs apart."""
    from jobs.train import train_settings

    off = train_settings(make_cfg("train.contrastive.temperature=0.3"))
    assert "contrastive" not in off and off == train_settings(make_cfg())
    on = train_settings(make_cfg("train.contrastive.weight=0.1"))
    assert on["contrastive"]["weight"] == 0.1
    assert on != train_settings(make_cfg("train.contrastive.weight=0.1", "train.contrastive.temperature=0.3"))


def test_the_ranks_allocator_is_no_part_of_the_run_key(make_cfg):
    """Memory management changes no result: a lake trained before the key existed keeps its run keys."""
    from jobs.train import train_settings

    settings = train_settings(make_cfg())
    assert "malloc_mmap_threshold" not in settings
    assert settings == train_settings(make_cfg("train.malloc_mmap_threshold=null"))
