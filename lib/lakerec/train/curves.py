"""The learning-curves figure logged with every training run: train loss and validation NDCG@10 / HR@10 by epoch."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: training runs on machines without a display
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curves(history: list[dict], best_epoch: int, path: Path) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o")
    loss_ax.set(title="train loss", xlabel="epoch")
    for key, label in (("valid_ndcg_10", "NDCG@10"), ("valid_hr_10", "HR@10")):
        valid_ax.plot(epochs, [h[key] for h in history], marker="o", label=label)
    valid_ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
    valid_ax.set(title="validation (full ranking)", xlabel="epoch")
    valid_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
