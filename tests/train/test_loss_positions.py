"""train.loss_positions=last: the loss reads each window's newest position only (one sample per prefix with
sequences.prefixes), checked by hand on the targets, against the model's last hidden state, and through the
training loop with real Horovod (one rank)."""
import pytest
import torch

from lakerec.models import build_model
from lakerec.train.losses import full_softmax_ce
from lakerec.train.loop import _epoch_seed, _train_epoch, lr_schedule, newest_target_only, parameter_checksum
from lakerec.data.feed import steps_for
from tests.train.test_contrastive import config, epoch_zero, hvd, windows  # noqa: F401 (hvd is a fixture)


def test_every_target_but_the_newest_becomes_padding():
    targets = torch.tensor([[0, 4, 5, 6], [0, 0, 7, 0], [1, 2, 3, 9]])
    assert newest_target_only(targets).tolist() == [[0, 0, 0, 6], [0, 0, 0, 0], [0, 0, 0, 9]]
    assert targets[0].tolist() == [0, 4, 5, 6]  # the feed's tensor is left as it was


@pytest.mark.parametrize("name", ["sasrec", "bsarec"])
def test_the_pairs_are_the_last_hidden_state_and_the_next_item(name):
    torch.manual_seed(0)
    model = build_model(config(name, dropout=0.0)).eval()
    inputs, targets = windows(5, seed=1)
    hidden, y = model.training_pairs(inputs, newest_target_only(targets))
    assert torch.equal(y, targets[:, -1]) and torch.allclose(hidden, model.user_vectors(inputs), atol=1e-6)
    # the loss by hand: -log softmax of each window's next item, from its user vector, over items 1..n
    logits = model.user_vectors(inputs) @ model.item_vectors()[1:].T
    by_hand = (logits.logsumexp(1) - logits[torch.arange(5), targets[:, -1] - 1]).mean()
    assert full_softmax_ce(hidden, model.item_vectors(), y).item() == pytest.approx(by_hand.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "bsarec"])
def test_the_loop_trains_on_the_newest_positions_only(hvd, make_cfg, name):  # noqa: F811
    inputs, targets = windows(40, seed=3)

    def run(conf, train_targets=None) -> str:
        """One epoch through _train_epoch; with train_targets, the feed already holds them (the reference)."""
        torch.manual_seed(0)
        model = build_model(config(name))
        optimizer = torch.optim.AdamW(model.parameters(), lr=conf.lr, weight_decay=conf.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(conf, steps))
        batches = epoch_zero(inputs, targets if train_targets is None else train_targets, conf)
        _train_epoch(hvd, model, batches, steps, conf, 0, full_softmax_ce, optimizer, scheduler, torch.device("cpu"))
        return parameter_checksum(model)

    last = make_cfg(f"train.model={name}", "train.batch_size=8", "train.loss_positions=last").train
    every = make_cfg(f"train.model={name}", "train.batch_size=8").train
    steps = steps_for(len(inputs), last.batch_size)
    assert _epoch_seed(last.seed, 0, 0) == _epoch_seed(every.seed, 0, 0)
    # the same as training every position of windows whose older targets were never there; not the same as all
    assert run(last) == run(every, newest_target_only(targets))
    assert run(last) != run(every)


def test_bert4rec_has_no_newest_position_to_train(make_cfg):
    assert make_cfg("train.loss_positions=last").train.loss_positions == "last"
    with pytest.raises(Exception, match="loss_positions=last needs a causal model"):
        make_cfg("train.model=bert4rec", "train.loss_positions=last")


def test_the_run_key_holds_the_setting_only_when_it_is_not_the_default(make_cfg):
    from jobs.train import train_settings

    assert "loss_positions" not in train_settings(make_cfg())
    assert train_settings(make_cfg("train.loss_positions=last"))["loss_positions"] == "last"
