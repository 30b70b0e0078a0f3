"""Warm start (`train.init: champion | <version>`): a new run begins from a registered model's weights.

The item index only grows by appending (lakerec.data.sequences.build_item_index), so the parent's item rows keep
their meaning: its state is copied as it is and the item embedding grows by the new items' rows, initialised
from their text for a text-aware model (the vector such an item already had: its projected text) or else as the
mean of the warm items' rows. The optimizer starts fresh (the loop builds it). A parent whose index is not a
prefix of the current one, or whose architecture differs, cannot be grown: that is an error naming both.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from lakerec import tables as T
from lakerec.models.base import PAD, ModelConfig, SequenceEncoder
from lakerec.models.registry import RegistryError, load_model, resolve_version

# what must match for a parent's weights to fit (n_items may grow; dropout, mask_prob, id_dropout are training-only)
ARCHITECTURE = ("name", "max_len", "dim", "layers", "heads", "norm_first", "text_dim", "text_fusion", "text_encoder")
PARENT_TAG = "lakerec.parent_version"
INIT_TAG = "lakerec.init"
TRAIN_KEY_TAG = "lakerec.train_key"
ITEM_EMB = "item_emb.weight"


class WarmStartError(ValueError):
    """The parent model is missing or cannot be grown to the current item index."""


@dataclass
class Parent:
    version: str
    model: SequenceEncoder
    meta: dict[str, Any]  # registry.load_model's: item_ids, tags (read.<table> = the versions it trained on), ...

    def read_version(self, table: str) -> int | None:
        value = self.meta["tags"].get(f"read.{table}")
        return None if value is None else int(value)

    def describe(self) -> str:
        index = self.read_version(T.SILVER_ITEM_INDEX)
        return (f"parent {self.meta['model_name']} v{self.version} ({len(self.meta['item_ids'])} items, "
                f"{T.SILVER_ITEM_INDEX} v{'?' if index is None else index})")


def load_parent(name: str, init: str | int, champion_alias: str) -> Parent:
    """The registered version train.init names (the alias holder for "champion"), loaded."""
    try:
        if init == "champion":
            version, _ = resolve_version(name, alias=champion_alias)
        else:
            version, _ = resolve_version(name, version=init)
    except RegistryError as e:
        wanted = f"alias {champion_alias!r}" if init == "champion" else f"version {init}"
        raise WarmStartError(f"train.init={init}: registered model {name!r} has no {wanted} to start from "
                             f"(train from scratch first: train.init=scratch). {e}") from None
    model, meta = load_model((name, version))
    return Parent(version, model, meta)


def check_compatible(parent: Parent, config: ModelConfig, item_ids: list[str], index_version: int) -> None:
    """The parent's item ids must be the first items of the current index, and its architecture this run's."""
    current = f"{T.SILVER_ITEM_INDEX} v{index_version} ({len(item_ids)} items)"
    old = parent.meta["item_ids"]
    if len(old) > len(item_ids) or item_ids[: len(old)] != old:
        first = next((i for i, (a, b) in enumerate(zip(old, item_ids)) if a != b), min(len(old), len(item_ids)))
        now = repr(item_ids[first]) if first < len(item_ids) else "absent"
        where = f"item_idx {first + 1} is {old[first]!r} in the parent but {now} now"
        raise WarmStartError(f"{parent.describe()} was trained on an item index that {current} does not extend "
                             f"({where}): warm start needs an index grown by appending; train with "
                             "train.init=scratch")
    mine, theirs = config.to_dict(), parent.model.config.to_dict()
    differ = {k: (theirs[k], mine[k]) for k in ARCHITECTURE if theirs[k] != mine[k]}
    if differ:
        raise WarmStartError(f"{parent.describe()} has another architecture than this run on {current} "
                             f"(parent, now): {differ}; train with train.init=scratch or the parent's settings")


def grown_state(parent: SequenceEncoder, config: ModelConfig, text: np.ndarray | None = None
                ) -> dict[str, torch.Tensor]:
    """The parent's state_dict for a model over config.n_items >= the parent's items: every tensor as it is,
    the item rows (and a text-aware model's text and known-item buffers) extended by the new items' rows after
    the old ones and before any extra token (BERT4Rec's [MASK] stays the last row)."""
    n_old, n_new = parent.config.n_items, config.n_items
    state = {k: v.detach().clone() for k, v in parent.state_dict().items()}
    added = n_new - n_old
    if added == 0:
        return state
    emb = state[ITEM_EMB]
    if config.text_dim and text is not None:  # the vector a text-only item already has
        with torch.no_grad():
            rows = parent.item_vectors_from_text(torch.as_tensor(text[n_old + 1: n_new + 1], dtype=torch.float32))
    else:
        rows = emb[PAD + 1: n_old + 1].mean(dim=0, keepdim=True).expand(added, -1)
    state[ITEM_EMB] = _insert(emb, n_old + 1, rows.to(emb))
    if config.text_dim:  # the loop reloads the text; the new items are not known by ID yet
        state["text_emb"] = _insert(state["text_emb"], n_old + 1, torch.zeros(added, state["text_emb"].shape[1]))
        state["id_known"] = _insert(state["id_known"], n_old + 1, torch.zeros(added))
    return state


def _insert(tensor: torch.Tensor, at: int, rows: torch.Tensor) -> torch.Tensor:
    return torch.cat([tensor[:at], rows.to(tensor.dtype), tensor[at:]])


def train_key(model_config: dict, train_settings: dict, versions: dict[str, int]) -> str:
    """What determines a training run: the model, the training settings and the input table versions."""
    key = json.dumps({"model": model_config, "train": train_settings, "tables": versions}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def trained_version(name: str, key: str) -> str | None:
    """The registered version an earlier run with this train key produced (a rerun of the same refresh)."""
    versions = MlflowClient().search_model_versions(f"name = '{name}' and tags.`{TRAIN_KEY_TAG}` = '{key}'")
    return str(max(int(v.version) for v in versions)) if versions else None


def lineage(parent: Parent | None, init: str | int, key: str) -> dict[str, str]:
    """Model-version tags of a run: how it was initialised, its train key and, warm, the parent version and the
    table versions the parent read (`parent.read.<table>`, beside this run's `read.<table>`)."""
    tags = {INIT_TAG: str(init), TRAIN_KEY_TAG: key}
    if parent is not None:
        tags[PARENT_TAG] = parent.version
        tags.update({f"parent.{k}": v for k, v in parent.meta["tags"].items() if k.startswith("read.")})
    return tags
