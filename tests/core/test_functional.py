import pytest
import torch
from torch import nn

from bbh.functional import ParamSpec, has_running_stats, sampled_forward


def small_convnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)
    )


def test_spec_layout_and_roundtrip():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    spec = ParamSpec.from_module(net)
    assert spec.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert spec.dim == 12 + 4 + 8 + 2
    assert spec["2.weight"].offset == 16
    flat = torch.randn(3, spec.dim)
    params = spec.unflatten(flat)
    assert params["0.weight"].shape == (3, 4, 3)
    assert torch.equal(spec.flatten(params), flat)


def test_include_predicate_keeps_others_deterministic():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    spec = ParamSpec.from_module(net, include=lambda name, p: not name.startswith("1."))
    assert "1.weight" not in spec.names and "0.weight" in spec.names


@pytest.mark.parametrize(
    "make_net, x",
    [
        (lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)), torch.randn(5, 6)),
        (small_convnet, torch.randn(5, 1, 8, 8)),
    ],
)
@pytest.mark.parametrize("mode", ["vmap", "loop", "auto"])
def test_point_mass_reproduces_net(make_net, x, mode):
    torch.manual_seed(0)
    net = make_net()
    spec = ParamSpec.from_module(net)
    flat = spec.from_module_values(net).expand(4, -1)
    out = sampled_forward(net, spec.unflatten(flat), x, mode=mode)
    assert out.shape == (4, 5, net(x).shape[-1])
    expected = net(x)
    for s in range(4):
        if mode == "loop":  # the same kernels as net(x): bit for bit
            assert torch.equal(out[s], expected)
        else:  # batched kernels: equal up to float rounding
            torch.testing.assert_close(out[s], expected, rtol=1e-6, atol=1e-6)


def test_vmap_and_loop_agree_for_different_samples():
    torch.manual_seed(0)
    net = small_convnet()
    spec = ParamSpec.from_module(net)
    params = spec.unflatten(torch.randn(3, spec.dim))
    x = torch.randn(7, 1, 8, 8)
    a = sampled_forward(net, params, x, mode="vmap")
    b = sampled_forward(net, params, x, mode="loop")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[0], a[1])


def test_x_per_sample():
    net = nn.Linear(2, 1)
    spec = ParamSpec.from_module(net)
    params = spec.unflatten(torch.randn(3, spec.dim))
    xs = torch.randn(3, 4, 2)
    out = sampled_forward(net, params, xs, x_per_sample=True)
    for s in range(3):
        expected = xs[s] @ params["weight"][s].t() + params["bias"][s]
        torch.testing.assert_close(out[s], expected)


def test_batchnorm_running_stats_uses_loop():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert has_running_stats(net)
    spec = ParamSpec.from_module(net)
    out = sampled_forward(net, spec.unflatten(torch.randn(2, spec.dim)), torch.randn(6, 3))
    assert out.shape == (2, 6, 2)
    net.eval()
    assert not has_running_stats(net)


def test_bad_inputs():
    with pytest.raises(ValueError, match="no parameters"):
        ParamSpec.from_module(nn.ReLU())
    spec = ParamSpec.from_module(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"shape \[S, 6\]"):
        spec.unflatten(torch.randn(2, 5))
    with pytest.raises(ValueError, match="expected"):
        spec.flatten({"weight": torch.randn(1, 3, 2), "bias": torch.randn(1, 2)})
    with pytest.raises(KeyError, match="missing"):
        spec.flatten({"weight": torch.randn(1, 2, 2)})
    with pytest.raises(ValueError, match="unknown forward mode 'fast'"):
        sampled_forward(
            nn.Linear(2, 2), spec.unflatten(torch.randn(1, 6)), torch.randn(1, 2), mode="fast"
        )


def test_unflatten_gradient_reaches_every_slice_once():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    spec = ParamSpec.from_module(net)
    flat = torch.randn(3, spec.dim, requires_grad=True)
    params = spec.unflatten(flat)
    weights = {name: torch.randn_like(p) for name, p in params.items()}
    sum((p * weights[name]).sum() for name, p in params.items()).backward()
    assert flat.grad is not None
    torch.testing.assert_close(flat.grad, spec.flatten(weights))


def test_auto_mode_loops_for_running_stats_one_sample_and_large_cpu_work():
    from bbh.functional import CPU_VMAP_MAX_WORK, auto_forward_mode

    cpu = torch.device("cpu")
    mlp = nn.Linear(3, 2)
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert auto_forward_mode(bn, 5, 10, 100, cpu) == "loop"
    assert auto_forward_mode(mlp, 1, 10, 100, cpu) == "loop"
    assert auto_forward_mode(mlp, 5, 10, 100, cpu) == "vmap"
    assert auto_forward_mode(mlp, 5, 100, CPU_VMAP_MAX_WORK, cpu) == "loop"
    assert auto_forward_mode(mlp, 5, 100, CPU_VMAP_MAX_WORK, torch.device("meta")) == "vmap"


def test_auto_mode_counts_the_point_estimates_a_pass_uses(monkeypatch):
    """A Bayesian subnetwork's deterministic layers run in every sample's pass: they count."""
    import bbh.functional as functional

    seen = []
    real = functional.auto_forward_mode

    def spy(net, s, examples, dim, device):
        seen.append(dim)
        return real(net, s, examples, dim, device)

    monkeypatch.setattr(functional, "auto_forward_mode", spy)
    net = nn.Sequential(nn.Linear(3, 400), nn.ReLU(), nn.Linear(400, 2))  # 1,600 + 802
    generated = {"2.weight": torch.randn(2, 2, 400), "2.bias": torch.randn(2, 2)}
    functional.sampled_forward(net, generated, torch.randn(5, 3))
    assert seen == [802 + 1_600]


def test_loop_gradients_match_vmap_for_per_sample_inputs():
    torch.manual_seed(0)
    net = small_convnet()
    spec = ParamSpec.from_module(net)
    xs = torch.randn(3, 4, 1, 8, 8)
    grads = []
    for mode in ("loop", "vmap"):
        flat = torch.randn(3, spec.dim, generator=torch.Generator().manual_seed(1))
        flat.requires_grad_(True)
        out = sampled_forward(net, spec.unflatten(flat), xs, x_per_sample=True, mode=mode)
        out.square().sum().backward()
        grads.append(flat.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
