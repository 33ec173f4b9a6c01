"""FGSM (paper and EOT) and PGD: raise the loss, respect epsilon and the input range."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bbh.attacks import eot_nll, fgsm, fgsm_paper, fgsm_paper_direction, pgd


def _loss(method, x, y) -> float:
    return float(eot_nll(method, x, y, num_samples=1).detach()) / len(y)


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "fgsm_paper"])
def test_attacks_raise_the_loss_and_respect_epsilon(linear, data, attack) -> None:
    x, y = data
    eps = 0.1
    if attack == "fgsm":
        x_adv = fgsm(linear, x, y, eps, num_samples=4)
    elif attack == "pgd":
        x_adv = pgd(linear, x, y, eps, steps=5, num_samples=4)
    else:
        x_adv = fgsm_paper(linear, x, y, eps, num_grad_samples=3)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert _loss(linear, x_adv, y) > _loss(linear, x, y) + 0.05
    assert float((x_adv - x).abs().max()) <= eps + 1e-12
    if attack != "fgsm_paper":
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_pgd_is_at_least_as_strong_as_fgsm(linear, data) -> None:
    x, y = data
    l_fgsm = _loss(linear, fgsm(linear, x, y, 0.1, num_samples=1), y)
    l_pgd = _loss(linear, pgd(linear, x, y, 0.1, steps=20, num_samples=1, random_start=False), y)
    assert l_pgd >= l_fgsm - 1e-9


def test_paper_fgsm_is_unclipped_and_clipping_is_not(linear) -> None:
    x = torch.zeros(5, 12, dtype=torch.float64)
    x[:, :6] = 1.0
    y = torch.zeros(5, dtype=torch.long)
    x_paper = fgsm_paper(linear, x, y, 0.3)
    assert float(x_paper.max()) > 1.0 or float(x_paper.min()) < 0.0
    x_clip = fgsm(linear, x, y, 0.3, num_samples=1)
    assert float(x_clip.min()) >= 0.0 and float(x_clip.max()) <= 1.0


def test_paper_fgsm_averages_signs_of_single_draw_gradients(dropout, data) -> None:
    x, y = data
    r = 4
    d = fgsm_paper_direction(dropout, x, y, num_grad_samples=r)
    assert torch.allclose(d * r, (d * r).round())  # a mean of R signs
    assert float(d.abs().max()) <= 1.0
    assert bool(((d.abs() > 0) & (d.abs() < 1)).any())  # draws disagree somewhere


def test_paper_fgsm_on_deterministic_model_is_plain_fgsm(linear, data) -> None:
    x, y = data
    xr = x.clone().requires_grad_(True)
    g = torch.autograd.grad(F.cross_entropy(linear.net(xr), y, reduction="sum"), xr)[0]
    assert torch.allclose(fgsm_paper(linear, x, y, 0.2), x + 0.2 * g.sign())


def _plain_pgd(net, x, y, eps, steps, step, start):
    x_adv = (x + start).clamp(0, 1)
    for _ in range(steps):
        xr = x_adv.clone().requires_grad_(True)
        g = torch.autograd.grad(F.cross_entropy(net(xr), y, reduction="sum"), xr)[0]
        x_adv = torch.minimum(torch.maximum(x_adv + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


def test_eot_pgd_on_deterministic_model_equals_plain_pgd(linear, data) -> None:
    x, y = data
    eps, steps = 0.15, 7
    adv = pgd(
        linear, x, y, eps, steps=steps, num_samples=8, generator=torch.Generator().manual_seed(5)
    )
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    ref = _plain_pgd(linear.net, x, y, eps, steps, 2.5 * eps / steps, eps * (2 * noise - 1))
    assert torch.allclose(adv, ref)


def test_input_transform_attacks_in_pixel_space(linear, data) -> None:
    x, y = data

    class Standardised(torch.nn.Module):
        stochastic = False

        def predict_logits(self, x, num_samples):
            return linear.predict_logits((x - 0.5) / 0.25, num_samples)

    kw = {"steps": 3, "num_samples": 2, "generator": None, "random_start": False}
    a = pgd(linear, x, y, 0.1, input_transform=lambda t: (t - 0.5) / 0.25, **kw)
    b = pgd(Standardised(), x, y, 0.1, **kw)
    assert torch.allclose(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_parameters_accumulate_no_gradients(dropout, data) -> None:
    x, y = data
    fgsm_paper(dropout, x, y, 0.1, num_grad_samples=2)
    fgsm(dropout, x, y, 0.1, num_samples=2)
    pgd(dropout, x, y, 0.1, steps=2, num_samples=2)
    assert all(p.grad is None for p in dropout.parameters())


def test_eps_zero_leaves_input_unchanged(dropout, data) -> None:
    x, y = data
    assert torch.equal(pgd(dropout, x, y, 0.0), x)
    assert torch.equal(fgsm(dropout, x, y, 0.0, num_samples=2), x)


def test_bad_input(linear, data) -> None:
    x, y = data
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        fgsm(linear, x, y, -0.1)
    with pytest.raises(ValueError, match="eps"):
        pgd(linear, x, y, float("nan"))
    with pytest.raises(ValueError, match="x must lie in the clip range"):
        fgsm(linear, x + 2.0, y, 0.1)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
        fgsm(linear, x, y + 3, 0.1)
    with pytest.raises(
        ValueError, match=r"x contains 480 NaN or infinite value\(s\) \(the first in example 0\)"
    ):
        fgsm_paper(linear, x * float("nan"), y, 0.1)
    with pytest.raises(ValueError, match="num_grad_samples"):
        fgsm_paper(linear, x, y, 0.1, num_grad_samples=0)


def test_no_grad_predict_logits_is_a_clear_error(data) -> None:
    x, y = data

    class NoGrad(torch.nn.Module):
        stochastic = False

        @torch.no_grad()
        def predict_logits(self, x, num_samples):
            return torch.zeros(num_samples, x.shape[0], 3, dtype=x.dtype)

    with pytest.raises(RuntimeError, match="differentiable in x"):
        fgsm(NoGrad(), x, y, 0.1)


class _Members(torch.nn.Module):
    """Ensemble-like: ``predict_logits`` always returns its M members, whatever S is."""

    stochastic = True

    def __init__(self, m: int = 3) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.members = torch.nn.ModuleList(torch.nn.Linear(12, 3).double() for _ in range(m))

    def predict_logits(self, x, num_samples=100):
        return torch.stack([f(x) for f in self.members])


def test_paper_fgsm_on_an_ensemble_averages_member_signs(data) -> None:
    x, y = data
    ens = _Members()
    signs = []
    for f in ens.members:
        xr = x.clone().requires_grad_(True)
        g = torch.autograd.grad(F.cross_entropy(f(xr), y, reduction="sum"), xr)[0]
        signs.append(g.sign())
    expected = torch.stack(signs).mean(0)
    assert torch.allclose(fgsm_paper_direction(ens, x, y, num_grad_samples=50), expected)
    assert all(p.grad is None for p in ens.parameters())


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "fgsm_paper"])
def test_token_ids_and_input_structures_cannot_be_perturbed(linear, attack) -> None:
    run = {"fgsm": fgsm, "pgd": pgd, "fgsm_paper": fgsm_paper}[attack]
    tokens, y = torch.randint(0, 5, (4, 12)), torch.zeros(4, dtype=torch.long)
    with pytest.raises(TypeError, match=r"^attacks perturb the input .* holds torch.int64 \(token"):
        run(linear, tokens, y, 0.1)
    with pytest.raises(TypeError, match=rf"^{attack}: x must be a Tensor, got dict"):
        run(linear, {"tokens": tokens}, y, 0.1)
