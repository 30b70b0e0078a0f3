"""The champion alias: it moves to a newly evaluated model version only when that version beats the current
champion re-evaluated on the same snapshot (a strictly higher test NDCG@10; a tie keeps the old champion)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lakerec.evaluate.metrics import ItemScores, ScoreFn, model_scores
from lakerec.models.sasrec import PAD, SASRec

CHAMPION = "champion"  # the current champion's name in the evaluation table and metric names
CHAMPION_METRIC = "ndcg_10"


def current_champion(name: str, alias: str) -> str | None:
    """The version holding the alias, or None (no champion yet)."""
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(e).lower():
            return None
        raise


def beats(candidate: float, champion: float | None) -> bool:
    """A candidate takes the title only with a strictly better score; no champion: it does."""
    return champion is None or candidate > champion


def promote_if_better(name: str, version: str, alias: str, candidate: float, champion: float | None) -> bool:
    """Point the alias at version when it beats the champion's score; True when it moved."""
    if not beats(candidate, champion):
        return False
    MlflowClient().set_registered_model_alias(name, alias, version)
    return True


def aligned_scores(model: SASRec, model_item_ids: Sequence[str], item_ids: Sequence[str]) -> ScoreFn:
    """Scores, in this snapshot's item index, of a model trained on another snapshot (an older champion): inputs
    are translated to its index (items it never saw become padding) and cut or left-padded to its max_len;
    items it cannot score rank last."""
    position = {item: i + 1 for i, item in enumerate(model_item_ids)}
    to_model = torch.tensor([PAD] + [position.get(item, PAD) for item in item_ids])
    known = to_model != PAD
    base, max_len = model_scores(model), model.config.max_len

    def score(inputs: torch.Tensor) -> ItemScores:
        translated = to_model[inputs][:, -max_len:]
        translated = F.pad(translated, (max_len - translated.shape[1], 0), value=PAD)
        base_scores = base(translated)

        def asked(items: torch.Tensor) -> torch.Tensor:
            out = torch.full((len(inputs), len(items)), torch.finfo(torch.float32).min)
            own = to_model[items]
            out[:, known[items]] = base_scores(own[known[items]]).float().cpu()
            return out

        return asked

    return score
