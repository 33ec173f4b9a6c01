"""``fit`` hooks, checkpoints and exact resume, in process (the CLI-level tests kill processes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bbh.methods import build
from bbh.training import (
    FitHooks,
    ShuffleSampler,
    TrainingInterrupted,
    TrainState,
    annealing,
    fit,
    load_latest_checkpoint,
    save_checkpoint,
)


def _task(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(60, 3, generator=g)
    return x, (x[:, 0] > 0).long()


def _method(name: str = "bbh") -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    if name == "bbh":
        return build("bbh", net, generator="chunked", hidden=(4, 8), kl="entropy", num_samples=3)
    return build(name, net)


def _train(method: nn.Module, hooks: FitHooks | None = None, resume: TrainState | None = None):
    x, y = _task()
    return fit(method, x, y, steps=25, batch_size=16, seed=5, kl_schedule=annealing(3, 10),
               log_every=4, hooks=hooks, resume=resume)  # fmt: skip


class Recorder(FitHooks):
    checkpoint_every = 6

    def __init__(self, stop_at: int | None = None):
        self.states: list[TrainState] = []
        self.epochs: list[tuple[int, int]] = []
        self.rows: list[dict[str, float]] = []
        self.stop_at = stop_at
        self.step = 0

    def on_step(self, step: int) -> None:
        self.step = step

    def on_log(self, row: dict[str, float]) -> None:
        self.rows.append(row)

    def on_epoch_end(self, method, epoch: int, step: int) -> None:
        assert not method.training
        torch.randn(100)  # validation draws noise: it must not change the training
        method.predict(torch.randn(4, 3), 3)
        self.epochs.append((epoch, step))

    def on_checkpoint(self, state: TrainState) -> None:
        self.states.append(state)

    def should_stop(self) -> bool:
        return self.stop_at is not None and self.step >= self.stop_at


@pytest.mark.parametrize("name", ["bbh", "mc_dropout"])
def test_hooks_do_not_change_the_training_and_resume_is_exact(name, tmp_path):
    plain = _method(name)
    _train(plain)
    hooked, hooks = _method(name), Recorder()
    _train(hooked, hooks)
    for (k, a), b in zip(plain.state_dict().items(), hooked.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert hooks.epochs == [(1, 3), (2, 6), (3, 9), (4, 12), (5, 15), (6, 18), (7, 21), (8, 24)]
    assert [s.step for s in hooks.states] == [6, 12, 18, 24, 25]  # every 6 steps and the end
    assert [r["step"] for r in hooks.rows] == [4, 8, 12, 16, 20, 24, 25]

    # stop at step 13 (checkpoint saved), save it to disk, resume in a fresh method
    stopped, stopper = _method(name), Recorder(stop_at=13)
    with pytest.raises(TrainingInterrupted) as stop:
        _train(stopped, stopper)
    assert stop.value.step == 13 and stopper.states[-1].step == 13
    save_checkpoint(stopper.states[-1], tmp_path)
    state, path, notes = load_latest_checkpoint(tmp_path)
    assert path.name == "step-00000013.pt" and notes == []
    torch.manual_seed(999)  # whatever the global RNG holds now, the checkpoint restores it
    resumed = _method(name)
    result = _train(resumed, resume=state)
    assert result.steps == 25
    for (k, a), b in zip(plain.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_sampler_state_round_trip():
    a = ShuffleSampler(10, 4, torch.Generator().manual_seed(0))
    first = [a.next_indices() for _ in range(3)]
    assert a.epoch == 1 and a.steps_per_epoch == 2
    assert torch.equal(torch.cat(first[:2]).sort().values, torch.cat(first[:2]).unique())
    state = a.state_dict()
    b = ShuffleSampler(10, 4, torch.Generator().manual_seed(123))
    b.load_state_dict(state)
    for _ in range(5):
        assert torch.equal(a.next_indices(), b.next_indices())
    with pytest.raises(ValueError, match="for 10 examples, not 11"):
        ShuffleSampler(11, 4, torch.Generator()).load_state_dict(state)


def test_resume_past_the_end_is_an_error():
    method, hooks = _method(), Recorder()
    _train(method, hooks)
    x, y = _task()
    with pytest.raises(ValueError, match="past steps=10"):
        fit(_method(), x, y, steps=10, batch_size=16, resume=hooks.states[-1])


def test_resume_is_exact_under_a_cosine_lr_schedule(tmp_path):
    """The rate is a function of the step, so a resumed run takes the same steps."""
    x, y = _task()

    def train(method, hooks=None, resume=None):
        return fit(method, x, y, steps=25, batch_size=16, seed=5, lr_schedule="cosine",
                   hooks=hooks, resume=resume)  # fmt: skip

    plain = _method("map")
    train(plain)
    stopped, stopper = _method("map"), Recorder(stop_at=13)
    with pytest.raises(TrainingInterrupted):
        train(stopped, stopper)
    resumed = _method("map")
    train(resumed, resume=stopper.states[-1])
    constant = _method("map")
    fit(constant, x, y, steps=25, batch_size=16, seed=5, lr_schedule="constant")
    for (k, a), b in zip(plain.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    pairs = zip(plain.parameters(), constant.parameters(), strict=True)
    assert any(not torch.equal(a, c) for a, c in pairs)  # the schedule did change the steps
