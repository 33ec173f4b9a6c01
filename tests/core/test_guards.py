"""The training guard: a loss or gradient going non-finite at a known step, and the warnings."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from bbh.methods import MAP, BayesByHypernet
from bbh.nets import MLP
from bbh.training import TrainingDiverged, TrainingWarning, fit


class Poisoned(MAP):
    """MAP whose loss (``kind="loss"``) or gradient (``kind="gradient"``, finite loss) goes
    NaN at call ``bad_call`` (1-based); counts its calls."""

    def __init__(self, net: nn.Module, bad_call: int, kind: str):
        super().__init__(net)
        self.bad_call, self.kind, self.calls = bad_call, kind, 0

    def loss(self, x: Tensor, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0):
        loss, logs = super().loss(x, y, num_data=num_data, kl_weight=kl_weight)
        self.calls += 1
        if self.calls == self.bad_call:
            if self.kind == "loss":
                loss = loss * float("nan")
            else:  # 0 * sqrt(0): value 0, gradient 0 * inf = NaN
                w = next(self.net.parameters())
                loss = loss + 0.0 * (w.sum() - w.sum().detach()).sqrt()
        return loss, logs


def _data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    return x, (x[:, 0] > 0).long()


def _params(model: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_non_finite_step_is_named_and_the_parameters_are_from_before_it(kind: str) -> None:
    """Fused Adam skips the bad step and every later one on the device (no sync per step); the
    guard reports at the next log interval, and the weights equal a clean run of 6 steps."""
    x, y = _data()
    torch.manual_seed(0)
    model = Poisoned(MLP(4, [8], 2), bad_call=7, kind=kind)
    with pytest.raises(TrainingDiverged, match=rf"non-finite {kind} \(NaN or infinite\) at step 7"):
        fit(model, x, y, steps=50, batch_size=16, lr=1e-2, log_every=20, lr_schedule="constant")
    assert model.calls == 20  # it ran on to the log interval: no host sync per step
    torch.manual_seed(0)
    clean = MAP(MLP(4, [8], 2))  # 6 steps at the same rates (constant: the run lengths differ)
    fit(clean, x, y, steps=6, batch_size=16, lr=1e-2, lr_schedule="constant")
    for after, expected in zip(_params(model), _params(clean), strict=True):
        assert torch.isfinite(after).all()
        torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_optimisers_without_device_skip_stop_before_the_bad_update() -> None:
    x, y = _data()
    torch.manual_seed(0)
    model = Poisoned(MLP(4, [8], 2), bad_call=3, kind="gradient")
    with pytest.raises(TrainingDiverged, match="at step 3; training stopped") as err:
        fit(model, x, y, steps=50, batch_size=16, lr=1e-2, optimizer="rmsprop", log_every=20)
    assert err.value.step == 3 and model.calls == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_learning_rate_10_stops_at_the_step_that_overflows() -> None:
    x, y = _data()
    x = x * 1e6
    torch.manual_seed(0)
    model = MAP(MLP(4, [64], 2))
    with pytest.raises(TrainingDiverged, match=r"lower learning rate \(now 1e\+30\)") as err:
        fit(model, x, y, steps=100, batch_size=16, lr=1e30)
    assert 1 <= err.value.step < 100
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_diverging_default_bbh_stops_with_the_guard_not_a_linear_algebra_error() -> None:
    """The Jacobian KL's Cholesky of non-finite weights gives NaN for the guard, not an error."""
    torch.manual_seed(0)
    x, y = torch.rand(200, 784), torch.randint(0, 10, (200,))
    model = BayesByHypernet(MLP(784, [20], 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingWarning)
        with pytest.raises(TrainingDiverged, match=r"lower learning rate \(now 10") as err:
            fit(model, x, y, steps=50, batch_size=20, lr=10.0, log_every=10)
    assert 1 <= err.value.step < 50
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_batchnorm_statistics_are_restored_after_a_bad_step() -> None:
    x, y = _data()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model = MAP(net)
    calls = {"n": 0}

    def poison(module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        calls["n"] += inputs[0].shape[0] == 16  # training batches (not fit's 2-example probe)
        return (inputs[0] * float("nan"),) if calls["n"] == 12 else inputs

    model.net[1].register_forward_pre_hook(poison)
    with pytest.raises(TrainingDiverged, match="at step 12"):
        fit(model, x, y, steps=30, batch_size=16, log_every=10)
    assert all(torch.isfinite(b).all() for b in model.buffers())


def test_the_optimiser_flag_does_not_outlive_the_step() -> None:
    x, y = _data()
    model = MAP(MLP(4, [8], 2))
    fit(model, x, y, steps=3, batch_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    from bbh.training.guards import TrainingGuard

    guard = TrainingGuard(model, opt, num_data=64)
    loss, logs = model.loss(x, y, num_data=64)
    loss.backward()
    guard.after_backward(0, loss, logs)
    assert hasattr(opt, "found_inf")
    opt.step()
    assert not hasattr(opt, "found_inf") and not hasattr(opt, "grad_scale")


class Scripted(MAP):
    """MAP whose logged ``nll`` and ``kl`` follow scripts (to exercise the warnings)."""

    def __init__(self, nll: list[float], kl: list[float]):
        super().__init__(MLP(4, [4], 2))
        self.nll_script, self.kl_script, self.calls = nll, kl, 0

    def loss(self, x: Tensor, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0):
        loss, logs = super().loss(x, y, num_data=num_data, kl_weight=kl_weight)
        i, self.calls = self.calls, self.calls + 1
        nll, kl = self.nll_script[i % len(self.nll_script)], self.kl_script[i % len(self.kl_script)]
        logs.update(nll=torch.tensor(nll), kl=torch.tensor(kl))
        return loss, logs


def _fit_warnings(model: nn.Module, **kwargs) -> list[str]:
    x, y = _data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, x, y, batch_size=16, **kwargs)
    assert all(w.category is TrainingWarning for w in caught)
    assert all(w.filename == __file__ for w in caught)  # pointed at the caller, not at bbh
    return [str(w.message) for w in caught]


def test_negative_kl_estimate_warns_once_with_the_steps() -> None:
    kl = [5.0] * 25 + [-3.5] + [-100.0] * 30
    messages = _fit_warnings(
        Scripted(nll=[2.0] * 60, kl=kl), steps=60, log_every=20, num_data=10_000, lr=0.01
    )
    assert messages == [
        "the KL estimate went negative (down to -100 in steps 21-40); a KL divergence never is, "
        "so the sample-based estimate is unreliable here: use more weight samples per step, or "
        "a lower learning rate (now 0.01)"
    ]


def test_rising_nll_warns() -> None:
    nll = [2.3] * 10 + [2861.0] + [3.0] * 20
    (message,) = _fit_warnings(Scripted(nll=nll, kl=[1.0] * 31), steps=30, log_every=10)
    assert message.startswith("the NLL rose from 2.3 at the first step to 2861 in steps 11-20")


def test_no_warning_on_a_healthy_run() -> None:
    assert _fit_warnings(MAP(MLP(4, [8], 2)), steps=40, log_every=10) == []


def test_kl_swamping_the_likelihood_warns_up_front_and_annealing_silences_it() -> None:
    x, y = _data()
    torch.manual_seed(0)
    big = BayesByHypernet(
        MLP(4, [256, 256], 2), hidden=(8,), num_samples=3, kl="entropy", temperature=1.0
    )
    with pytest.warns(TrainingWarning, match=r"times the NLL .* with 64 examples for 67,586 w"):
        fit(big, x, y, steps=1, batch_size=16)
    assert _fit_warnings(big, steps=1, kl_schedule=lambda step: 0.0 if step < 10 else 1.0) == []


@pytest.mark.parametrize("name", ["map", "bbh"])
def test_training_steps_make_no_host_sync(name: str, monkeypatch) -> None:
    """Reading a tensor's value on the host (bool, float, int, item, tolist) is what syncs an
    accelerator: the count must not grow with the number of steps (only the up-front checks,
    the first step's KL check and the log intervals read values)."""
    from bbh.methods import build

    counts = {"n": 0}
    for attr in ("__bool__", "__float__", "__int__", "item", "tolist"):
        original = getattr(Tensor, attr)

        def counted(self, *args, _original=original):
            counts["n"] += 1
            return _original(self, *args)

        monkeypatch.setattr(Tensor, attr, counted)
    x, y = _data()
    options = {"hidden": (8,), "num_samples": 3, "generator": "chunked"} if name == "bbh" else {}

    def syncs(steps: int, optimizer: str) -> int:
        torch.manual_seed(0)
        model = build(name, MLP(4, [8], 2), **options)
        counts["n"] = 0
        fit(model, x, y, steps=steps, batch_size=16, log_every=1000, optimizer=optimizer)
        return counts["n"]

    assert syncs(10, "adam") == syncs(30, "adam")
    # the counter does see syncs: without a device-side skip the guard reads its flag each step
    assert syncs(30, "rmsprop") - syncs(10, "rmsprop") == 20
