"""ICSRec's released Toys checkpoint, scored under the benchmark's protocol (peers/protocol.py): does the published
bar hold when the history is excluded the way lakerec excludes it?

    git -C <mirror of QinHsiu/ICSRec> show HEAD:src/output/ICSRec-SAS-Toys_and_Games-0.pt > /tmp/icsrec_toys.pt
    .venv/bin/python benchmarks/peers/icsrec_checkpoint.py --checkpoint /tmp/icsrec_toys.pt \
        [--data ../shared/data/amazon-toys/Toys_and_Games.txt]

The checkpoint is a plain SASRec state dict (ICSRec trains it with intent-contrastive losses; what it scores with
is the encoder alone): item and position embeddings, a TF-style LayerNorm, post-norm blocks (self-attention,
then a 4x GELU feed-forward), the last position's state dotted with every item embedding. The forward pass below
is that encoder written out in torch, shapes read from the state dict. Leave-one-out on the file's lines (the
last item is the test target, the one before it the validation target), full ranking over the catalog's items,
the history before the target excluded (an excluded target is a miss): the same split and rule as
`benchmarks/quality.py --dataset toys`.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol as P  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "amazon-toys" / "Toys_and_Games.txt"  # as benchmarks/quality.py finds it


class Encoder:
    """The checkpoint's SASRec encoder, inference only (dropout is identity)."""

    def __init__(self, state: dict[str, torch.Tensor], heads: int):
        self.w, self.heads = state, heads
        self.max_len, self.dim = state["position_embeddings.weight"].shape
        self.blocks = sorted({int(k.split(".")[2]) for k in state if k.startswith("item_encoder.layer.")})

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        return self.w[f"{name}.weight"] * (x - mean) / torch.sqrt(var + 1e-12) + self.w[f"{name}.bias"]

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def last_state(self, ids: torch.Tensor) -> torch.Tensor:
        """[batch, max_len] left-padded item ids (0 = padding) -> [batch, dim], the state at the last position."""
        batch, length = ids.shape
        x = self._norm(self.w["item_embeddings.weight"][ids] + self.w["position_embeddings.weight"][:length],
                       "LayerNorm")
        visible = (ids > 0)[:, None, None, :] & torch.ones(length, length, dtype=torch.bool).tril()[None, None]
        bias = (~visible).float() * -10000.0  # the checkpoint was trained with this additive mask
        split = self.dim // self.heads
        for b in self.blocks:
            p = f"item_encoder.layer.{b}"
            q, k, v = (self._linear(x, f"{p}.attention.{n}").view(batch, length, self.heads, split).transpose(1, 2)
                       for n in ("query", "key", "value"))
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(split) + bias, -1) @ v
            x = self._norm(self._linear(att.transpose(1, 2).reshape(batch, length, self.dim), f"{p}.attention.dense")
                           + x, f"{p}.attention.LayerNorm")
            h = self._linear(x, f"{p}.intermediate.dense_1")
            h = h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
            x = self._norm(self._linear(h, f"{p}.intermediate.dense_2") + x, f"{p}.intermediate.LayerNorm")
        return x[:, -1]


def ranks(encoder: Encoder, lines: list[list[int]], cut: int, n_items: int, batch: int = 1024) -> torch.Tensor:
    """Rank of each line's target (the item `cut` places from its end) among items 1..n_items, history excluded."""
    items = encoder.w["item_embeddings.weight"]
    out = []
    for start in range(0, len(lines), batch):
        chunk = lines[start:start + batch]
        ids = torch.zeros(len(chunk), encoder.max_len, dtype=torch.long)
        excluded = torch.zeros(len(chunk), items.shape[0], dtype=torch.bool)
        excluded[:, 0] = True
        excluded[:, n_items + 1:] = True  # rows past the catalog (ICSRec keeps one spare id)
        for row, line in enumerate(chunk):
            history = line[:-cut][-encoder.max_len:]
            ids[row, encoder.max_len - len(history):] = torch.tensor(history)
            excluded[row, line[:-cut]] = True
        with torch.no_grad():
            scores = encoder.last_state(ids) @ items.T
        out.append(P.target_ranks(scores, torch.tensor([line[-cut] for line in chunk]), excluded))
    return torch.cat(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="ICSRec-SAS-Toys_and_Games-0.pt")
    parser.add_argument("--data", default=str(DATA), help="Toys_and_Games.txt (user item item ... per line)")
    parser.add_argument("--heads", type=int, default=2, help="attention heads the checkpoint was trained with")
    args = parser.parse_args()
    if not Path(args.data).exists():
        print(f"skipped: {args.data} is absent (the data set is not redistributed with the repository)")
        return 0
    # quality.py's sequence_file_split keeps the users with a training item besides the two held out: so here
    lines = [items for items in ([int(x) for x in text.split()[1:]] for text in open(args.data)) if len(items) >= 3]
    n_items = max(max(line) for line in lines)
    encoder = Encoder(torch.load(args.checkpoint, map_location="cpu"), args.heads)
    print(f"users={len(lines)} items={n_items} blocks={len(encoder.blocks)} dim={encoder.dim}")
    print(f"{'split':<6} {'hr@10':>7} {'ndcg@10':>8} {'hr@20':>7} {'ndcg@20':>8}")
    for split, cut in (("valid", 2), ("test", 1)):
        m = P.ranking_metrics(ranks(encoder, lines, cut, n_items))
        print(f"{split:<6} {m['hr@10']:>7.4f} {m['ndcg@10']:>8.4f} {m['hr@20']:>7.4f} {m['ndcg@20']:>8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
