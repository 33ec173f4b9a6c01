"""Small nets a user brings: token ids, recurrent layers, attention, several inputs.

Each maker returns ``(net, x, y)``: a fresh net (with a dropout module, so MC dropout has a
place to act) and a batch of 8 examples with 3 classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

VOCAB, EMBED, LENGTH, CLASSES, BATCH = 30, 6, 5, 3, 8


class BagOfEmbeddings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMBED)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(EMBED, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.emb(tokens).mean(dim=1)))


class RecurrentClassifier(nn.Module):
    def __init__(self, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMBED)
        self.rnn = cell(EMBED, 7, batch_first=True)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(7, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.emb(tokens))
        return self.out(self.drop(hidden[:, -1]))


class TransformerClassifier(nn.Module):
    """Float inputs ``[B, T, 8]``."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.out = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.enc(x).mean(dim=1))


class TwoInputs(nn.Module):
    """``net(tokens, features)``: called with a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMBED)
        self.dense = nn.Linear(4, EMBED)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(EMBED, CLASSES)

    def forward(self, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.emb(tokens).mean(dim=1) + self.dense(features)))


class MaskedTokens(nn.Module):
    """``net(tokens=..., mask=...)``: called with a dict; padded positions are ignored."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMBED)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(EMBED, CLASSES)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(self.emb.weight.dtype)
        pooled = (self.emb(tokens) * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.out(self.drop(pooled))


def _tokens(gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, LENGTH), generator=gen)


def make(kind: str) -> tuple[nn.Module, Any, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(0)
    x: Any
    if kind == "embedding":
        net: nn.Module = BagOfEmbeddings()
        x = _tokens(gen)
    elif kind in ("lstm", "gru"):
        net = RecurrentClassifier(nn.LSTM if kind == "lstm" else nn.GRU)
        x = _tokens(gen)
    elif kind == "transformer":
        net = TransformerClassifier()
        x = torch.randn(BATCH, LENGTH, 8, generator=gen)
    elif kind == "tuple":
        net = TwoInputs()
        x = (_tokens(gen), torch.randn(BATCH, 4, generator=gen))
    elif kind == "dict":
        net = MaskedTokens()
        tokens = _tokens(gen)
        x = {"tokens": tokens, "mask": torch.arange(LENGTH).expand(BATCH, LENGTH) < 3}
    else:
        raise ValueError(kind)
    y = torch.randint(0, CLASSES, (BATCH,), generator=gen)
    return net, x, y


KINDS = ["embedding", "lstm", "gru", "transformer", "tuple", "dict"]
MAKERS: dict[str, Callable[[], tuple[nn.Module, Any, torch.Tensor]]] = {
    k: (lambda k=k: make(k)) for k in KINDS
}
