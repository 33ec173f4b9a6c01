import copy
import math
import re

import pytest
import torch
from torch import nn

from bbh.methods import BayesByHypernet, build
from bbh.training import (
    FitHooks,
    TrainingInterrupted,
    annealing,
    fit,
    kl_annealing,
    paper_toy_schedule,
)


def test_kl_annealing():
    assert kl_annealing(0, 10, 20) == 0.0
    assert kl_annealing(9, 10, 20) == 0.0
    assert kl_annealing(20, 10, 20) == 0.5
    assert kl_annealing(30, 10, 20) == 1.0
    assert kl_annealing(10_000, 10, 20) == 1.0
    assert kl_annealing(3, 0, 0) == 1.0
    assert annealing(2750, 8250)(2750 + 8250 // 2) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError):
        kl_annealing(0, -1, 5)


def test_paper_toy_schedule_goes_to_zero():
    assert [paper_toy_schedule(i) for i in range(4)] == [1.0, 1.0, 1.0, 1.0]
    assert paper_toy_schedule(5) == pytest.approx(10 / 6 - 1)
    assert all(paper_toy_schedule(i) == 0.0 for i in range(9, 50))


def test_fit_learns_a_separable_task():
    torch.manual_seed(0)
    x = torch.randn(400, 2)
    y = (x[:, 0] + x[:, 1] > 0).long()
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    m = BayesByHypernet(net, hidden=(16, 32), num_samples=4, kl="entropy")
    result = fit(m, x, y, steps=300, batch_size=50, lr=3e-3, log_every=100)
    assert len(result.logs) == 3 and result.logs[-1]["step"] == 300
    acc = (m.predict(x, 20).argmax(-1) == y).float().mean().item()
    assert acc > 0.9


def test_fit_rejects_mismatched_data():
    m = BayesByHypernet(nn.Linear(2, 2), hidden=(4,))
    with pytest.raises(ValueError, match="disagree"):
        fit(m, torch.randn(5, 2), torch.zeros(4, dtype=torch.long), steps=1, batch_size=2)
    with pytest.raises(ValueError, match="optimizer"):
        fit(
            m,
            torch.randn(5, 2),
            torch.zeros(5, dtype=torch.long),
            steps=1,
            batch_size=2,
            optimizer="sgd",
        )


def test_fit_uses_the_methods_default_lr():
    layerwise = BayesByHypernet(nn.Linear(2, 2), hidden=(4,), generator="layerwise")
    chunked = BayesByHypernet(nn.Linear(2, 2), hidden=(4,), generator="chunked")
    assert layerwise.default_lr == 1e-4 and chunked.default_lr == 1e-3
    x, y = torch.randn(8, 2), torch.zeros(8, dtype=torch.long)
    before = [p.detach().clone() for p in layerwise.parameters() if p.requires_grad]
    fit(layerwise, x, y, steps=1, batch_size=8, kl_schedule=lambda step: 0.0)
    after = [p for p in layerwise.parameters() if p.requires_grad]
    # Adam's first step moves each parameter with a gradient by about lr
    step = max((a - b).abs().max().item() for a, b in zip(after, before, strict=True))
    assert 0.5e-4 < step < 1.01e-4


def test_fit_checks_the_whole_training_set_before_the_first_step():
    m = BayesByHypernet(nn.Linear(2, 3), hidden=(4,))
    x, y = torch.randn(50, 2), torch.randint(0, 3, (50,))
    bad = x.clone()
    bad[31, 1] = float("nan")
    with pytest.raises(ValueError, match=r"x contains 1 NaN .* \(the first in example 31\)"):
        fit(m, bad, y, steps=5, batch_size=10)
    labels = y.clone()
    labels[7] = 42
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\) .* got values in \[0, 42\]"):
        fit(m, x, labels, steps=5, batch_size=10)
    with pytest.raises(TypeError, match="y must hold integer class indices"):
        fit(m, x, y.float(), steps=5, batch_size=10)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"steps": 0}, "fit: steps must be an int >= 1, got int 0"),
        ({"steps": 2.5}, "fit: steps must be an int >= 1, got float 2.5"),
        ({"batch_size": -1}, "fit: batch_size must be an int >= 1, got int -1"),
        ({"lr": float("nan")}, "fit: lr must be a finite real number > 0 or None, got float nan"),
        ({"lr": 0.0}, "fit: lr must be a finite real number > 0 or None, got float 0.0"),
        ({"num_data": 0}, "fit: num_data must be an int >= 1 or None, got int 0"),
        ({"kl_schedule": 1.0}, "fit: kl_schedule must be a callable or None, got float 1.0"),
        ({"log_every": 0}, "fit: log_every must be an int >= 1, got int 0"),
    ],
)
def test_fit_options_are_checked(option, message):
    m = BayesByHypernet(nn.Linear(2, 3), hidden=(4,))
    kwargs = {"steps": 2, "batch_size": 4, **option}
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(m, torch.randn(8, 2), torch.zeros(8, dtype=torch.long), **kwargs)


def test_fit_with_a_transform_checks_what_the_model_sees():
    m = BayesByHypernet(nn.Linear(4, 3), hidden=(4,))
    x = torch.randint(0, 255, (20, 2), dtype=torch.uint8)  # raw bytes, scaled by the transform
    y = torch.randint(0, 3, (20,))

    def widen(xb, gen):
        return torch.cat([xb, xb], dim=1).float() / 255

    fit(m, x, y, steps=2, batch_size=5, transform=widen)
    with pytest.raises(ValueError, match=r"x after transform has shape \[2, 2\], which Linear"):
        fit(m, x, y, steps=2, batch_size=5, transform=lambda xb, gen: xb.float())


def test_lr_factor():
    from bbh.training.schedules import lr_factor

    assert lr_factor("constant", 7, 10) == 1.0
    assert lr_factor("cosine", 0, 10) == 1.0
    assert lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 9, 10) == pytest.approx((1 + math.cos(0.9 * math.pi)) / 2)
    assert [lr_factor("cooldown", s, 100) for s in (0, 79, 80, 90, 99)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.5, 0.05]
    )
    with pytest.raises(ValueError, match="unknown lr_schedule 'step'"):
        lr_factor("step", 0, 10)
    # a warm-up over the first fifth multiplies the schedule's factor by (step + 1) / 20
    assert [lr_factor("cooldown", s, 100, 0.2) for s in (0, 9, 19, 20, 90)] == pytest.approx(
        [0.05, 0.5, 1.0, 1.0, 0.5]
    )
    assert lr_factor("cosine", 4, 10, 0.5) == pytest.approx(
        (1 + math.cos(0.4 * math.pi)) / 2
    )  # the warm-up ends where it starts to fall
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"warmup must be a fraction of the run in \[0, 1\)"):
            lr_factor("cooldown", 0, 10, bad)


class _Moves(FitHooks):
    """How far the parameters moved in each step (the largest change of any entry)."""

    def __init__(self, model: nn.Module):
        self.model, self.moves = model, []
        self.last = [p.detach().clone() for p in model.parameters()]

    def on_step(self, step: int) -> None:
        now = [p.detach().clone() for p in self.model.parameters()]
        pairs = zip(now, self.last, strict=True)
        self.moves.append(max((a - b).abs().max().item() for a, b in pairs))
        self.last = now


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_fit_lr_schedule_sets_each_steps_rate(schedule):
    torch.manual_seed(0)
    m = build("map", nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)))
    x = torch.randn(40, 2)
    y = (x[:, 0] > 0).long()
    hooks = _Moves(m)
    fit(m, x, y, steps=20, batch_size=10, lr=1e-2, lr_schedule=schedule, hooks=hooks)
    # an Adam step moves the parameters by about lr x the schedule's factor
    assert 0.5e-2 < hooks.moves[0] < 1.01e-2
    if schedule == "constant":
        assert hooks.moves[-1] > 0.3e-2
    else:
        assert hooks.moves[-1] < 1.01e-2 * (1 + math.cos(math.pi * 19 / 20)) / 2
        assert hooks.moves[10] < 1.01e-2 * 0.5


class _FirstStep(_Moves):
    """Stops the run after its first step."""

    def should_stop(self) -> bool:
        return len(self.moves) >= 1


def test_fit_warms_up_the_rate_but_not_sigmas_own():
    """``lr_warmup``: the first Adam step (which moves every parameter by its rate) is a tenth
    of the rate with a warm-up over 10 of 100 steps; a posterior's scale, in a group with its
    own constant schedule, moves at its full rate from the first step."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(40, 2)
    y = (x[:, 0] > 0).long()
    for warmup, first in ((0.0, 1e-2), (0.1, 1e-3)):
        m = build("map", copy.deepcopy(net))
        hooks = _FirstStep(m)
        with pytest.raises(TrainingInterrupted):
            fit(m, x, y, steps=100, batch_size=10, lr=1e-2, lr_warmup=warmup, hooks=hooks)
        assert hooks.moves[0] == pytest.approx(first, rel=0.01)
    m = build("bbh", copy.deepcopy(net), temperature=1.0)
    log_sigma = m.posterior.log_sigma_param
    scales = (log_sigma, m.posterior.log_sigma_tensor_param)  # sigma's own group
    before = log_sigma.detach().clone()
    rest = [p.detach().clone() for p in m.parameters() if all(p is not s for s in scales)]
    with pytest.raises(TrainingInterrupted):
        fit(m, x, y, steps=100, batch_size=10, lr=1e-2, lr_warmup=0.1, hooks=_FirstStep(m))
    assert (log_sigma.detach() - before).abs().max() == pytest.approx(1e-2, rel=0.01)
    moved = [p.detach() for p in m.parameters() if all(p is not s for s in scales)]
    assert max((a - b).abs().max() for a, b in zip(moved, rest, strict=True)) <= 1.01e-3
    with pytest.raises(ValueError, match="warmup must be a fraction"):
        fit(m, x, y, steps=2, batch_size=10, lr_warmup=1.5)


def test_fit_rejects_an_unknown_lr_schedule():
    m = build("map", nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'; allowed"):
        fit(m, torch.randn(4, 2), torch.zeros(4, dtype=torch.long), steps=1, batch_size=2,
            lr_schedule="linear")  # fmt: skip


def test_lr_schedule_names_agree_between_config_and_training():
    from bbh.experiments.config import LR_SCHEDULES as in_config
    from bbh.training.schedules import LR_SCHEDULES

    assert in_config == LR_SCHEDULES


@pytest.mark.parametrize("name", ["bbh", "bbb"])
def test_a_cosine_schedule_leaves_the_posteriors_scale_at_its_rate(name):
    """The decay settles the means; sigma keeps its rate so that it reaches its optimum."""
    torch.manual_seed(0)
    m = build(name, nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)), temperature=1.0)
    groups = m.optimizer_groups(1e-3)
    assert [g.get("lr_schedule") for g in groups] == [None, "constant"]
    scale_params = {id(p) for p in groups[1]["params"]}  # BbH's: per weight and per tensor
    x = torch.randn(40, 2)
    y = (x[:, 0] > 0).long()
    hooks = _Moves(m)
    before: list[torch.Tensor] = []

    class Last(FitHooks):
        def on_step(self, step: int) -> None:
            hooks.on_step(step)
            if step == 19:
                before[:] = [p.detach().clone() for p in m.parameters()]

    fit(m, x, y, steps=20, batch_size=10, lr_schedule="cosine", hooks=Last())
    moved = {
        id(p): (p.detach() - b).abs().max().item()
        for p, b in zip(m.parameters(), before, strict=True)
    }
    rate = groups[1]["lr"]
    assert all(moved[k] > 0.3 * rate for k in scale_params)  # the last step at the full rate
    factor = (1 + math.cos(math.pi * 19 / 20)) / 2
    others = [v for k, v in moved.items() if k not in scale_params]
    assert max(others) < 3e-3 * factor  # decayed (an Adam step may exceed lr a little)
