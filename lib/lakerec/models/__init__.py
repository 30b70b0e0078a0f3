"""The sequence models, chosen by name (`train.model`): `build_model(config)` is the one place that maps a name to
a class, used by training and by the registry when it rebuilds a logged version. The names themselves are
lakerec.config.MODEL_NAMES, which config validation and ModelConfig share."""
from __future__ import annotations

from lakerec.config import MODEL_NAMES
from lakerec.models.base import ModelConfig, SequenceEncoder
from lakerec.models.bert4rec import BERT4Rec
from lakerec.models.bsarec import BSARec
from lakerec.models.sasrec import SASRec

MODELS: dict[str, type[SequenceEncoder]] = {"sasrec": SASRec, "bert4rec": BERT4Rec, "bsarec": BSARec}
if tuple(MODELS) != MODEL_NAMES:
    raise ImportError(f"lakerec.models.MODELS {tuple(MODELS)} must cover lakerec.config.MODEL_NAMES {MODEL_NAMES}")


def model_config(cfg, n_items: int, text_dim: int = 0) -> ModelConfig:
    """The model's config from the validated lakerec Config (train.* sizes, sequences.max_len; train.text with
    the encoder's text_dim when text-aware; train.bsarec for BSARec)."""
    tc, text = cfg.train, cfg.train.text
    extra = {}
    if text.enabled:
        if text_dim < 1:
            raise ValueError("train.text.enabled needs the text embeddings' size (run the embed stage)")
        extra = dict(text_dim=text_dim, text_fusion=text.fusion, id_dropout=text.id_dropout,
                     text_encoder=cfg.text.encoder)
    if tc.model == "bsarec":
        extra.update(bsarec_alpha=tc.bsarec.alpha, bsarec_window=tc.bsarec.window)
    return ModelConfig(n_items=n_items, max_len=cfg.sequences.max_len, dim=tc.dim, layers=tc.layers, heads=tc.heads,
                       dropout=tc.dropout, name=tc.model, mask_prob=tc.mask_prob, item_dropout=tc.item_dropout,
                       **extra)


def build_model(config: ModelConfig) -> SequenceEncoder:
    """A freshly initialised model of the configured kind."""
    return MODELS[config.name](config)
