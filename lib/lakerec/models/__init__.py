"""The sequence models, chosen by name (`train.model`): `build_model(config)` is the one place that maps a name to
a class, used by training and by the registry when it rebuilds a logged version."""
from __future__ import annotations

from lakerec.models.base import ModelConfig, SequenceEncoder
from lakerec.models.bert4rec import BERT4Rec
from lakerec.models.sasrec import SASRec

MODELS: dict[str, type[SequenceEncoder]] = {"sasrec": SASRec, "bert4rec": BERT4Rec}


def model_config(cfg, n_items: int) -> ModelConfig:
    """The model's config from the validated lakerec Config (train.* sizes, sequences.max_len)."""
    tc = cfg.train
    return ModelConfig(n_items=n_items, max_len=cfg.sequences.max_len, dim=tc.dim, layers=tc.layers, heads=tc.heads,
                       dropout=tc.dropout, name=tc.model, mask_prob=tc.mask_prob)


def build_model(config: ModelConfig) -> SequenceEncoder:
    """A freshly initialised model of the configured kind."""
    return MODELS[config.name](config)
