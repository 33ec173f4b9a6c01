"""``fit``, ``predict_batched`` and the temperature search on tuple and dict inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bbh import build
from bbh.evaluation import predict_batched
from bbh.training import fit


class Aligned(nn.Module):
    """Token ids and their float copy: a minibatch that mixed rows of the two would fail."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(12, 4)
        self.out = nn.Linear(5, 2)

    def forward(self, ids: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
        if not torch.equal(ids.to(copy.dtype), copy):
            raise AssertionError("rows of ids and copy were indexed apart")
        return self.out(torch.cat([self.emb(ids), copy.unsqueeze(-1)], dim=-1))


def _data(n: int = 40) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 12, (n,), generator=gen)
    return {"ids": ids, "copy": ids.float()}, (ids >= 6).long()


@pytest.mark.parametrize("structure", ["dict", "tuple"])
def test_fit_indexes_every_input_tensor_together(structure: str) -> None:
    x, y = _data()
    if structure == "tuple":
        x = (x["ids"], x["copy"])
    method = build("map", Aligned())
    result = fit(method, x, y, steps=30, batch_size=8, lr=0.05, log_every=30)
    assert result.steps == 30
    probs = predict_batched(method, x, num_samples=1, batch_size=7).probs  # 6 uneven batches
    torch.testing.assert_close(probs.float(), method.predict(x, 1), rtol=1e-5, atol=1e-6)
    assert (probs.argmax(-1) == y).float().mean() > 0.8  # it learned the rule


def test_the_temperature_search_scores_structured_validation_data() -> None:
    x, y = _data()
    method = build("bbh", Aligned(), temperature="validation")
    xv, yv = {k: v[:10] for k, v in x.items()}, y[:10]
    result = fit(method, x, y, steps=2, batch_size=8, validation=(xv, yv), val_samples=2)
    assert result.temperature is not None and result.temperature.val_examples == 10


def test_fit_names_inputs_that_disagree_with_the_labels() -> None:
    x, y = _data()
    method = build("map", Aligned())
    with pytest.raises(ValueError, match=r"x and y disagree on the number of examples"):
        fit(method, x, y[:-1], steps=1, batch_size=8)
    bad = {"ids": x["ids"], "copy": x["copy"][:-1]}
    with pytest.raises(ValueError, match=r"x\['copy'\] has 39 rows, x\['ids'\] has 40"):
        fit(method, bad, y, steps=1, batch_size=8)
