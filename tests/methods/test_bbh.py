import math

import pytest
import torch
from torch import nn

import bbh
from bbh.methods import BayesByHypernet
from bbh.training import fit

NLL_MODES = ["first", "mean", "split", "predictive"]


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def batch(b: int = 12):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 6, generator=g), torch.randint(0, 3, (b,), generator=g)


@pytest.mark.parametrize("nll", NLL_MODES)
@pytest.mark.parametrize("generator", ["layerwise", "chunked"])
def test_loss_and_gradients(nll, generator):
    torch.manual_seed(0)
    m = BayesByHypernet(
        tiny_net(),
        noise_dim=2,
        num_samples=4,
        hidden=(8, 16),
        nll=nll,
        generator=generator,
        kl="entropy",
    )
    x, y = batch()
    loss, logs = m.loss(x, y, num_data=100, kl_weight=0.5)
    assert torch.isfinite(loss) and set(logs) >= {"nll", "kl", "loss"}
    t = m.temperature  # the KL's temperature, part of the model
    torch.testing.assert_close(logs["loss"], logs["nll"] + 0.5 * t * logs["kl"] / 100)
    loss.backward()
    trainable = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("posterior.") for n, _ in trainable)
    for name, p in trainable:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_split_with_uneven_batch_matches_manual_split():
    torch.manual_seed(0)
    m = BayesByHypernet(tiny_net(), num_samples=3, hidden=(8,), nll="split")
    x, y = batch(10)  # 10 = 4 + 3 + 3
    torch.manual_seed(1)
    _, logs = m.loss(x, y, num_data=10, kl_weight=0.0)
    torch.manual_seed(1)
    w = m.posterior.sample(3, antithetic=m.antithetic).weights  # the training step's draw
    out = [m.predict_logits_with(w[i : i + 1], xi)[0] for i, xi in enumerate(x.tensor_split(3))]
    ce = nn.functional.cross_entropy(torch.cat(out), y)
    torch.testing.assert_close(logs["nll"], ce)


def test_first_mode_uses_sample_zero_only():
    torch.manual_seed(0)
    m = BayesByHypernet(tiny_net(), num_samples=3, hidden=(8,), nll="first")
    x, y = batch()
    torch.manual_seed(2)
    _, logs = m.loss(x, y, num_data=10, kl_weight=0.0)
    torch.manual_seed(2)
    w = m.posterior.sample(3, antithetic=m.antithetic).weights
    ce = nn.functional.cross_entropy(m.predict_logits_with(w[:1], x)[0], y)
    torch.testing.assert_close(logs["nll"], ce)


def test_predict_shapes_and_batching():
    m = BayesByHypernet(tiny_net(), hidden=(8,), sample_batch=4)
    x, _ = batch(5)
    assert m.predict_logits(x, 10).shape == (10, 5, 3)
    probs = m.predict(x, 7)
    assert probs.shape == (5, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))


def test_user_net_is_not_modified():
    net = tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    m = BayesByHypernet(net, hidden=(8,))
    m.loss(*batch(), num_data=10)[0].backward()
    assert all(p.requires_grad for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_seeded_determinism_and_state_dict_roundtrip():
    torch.manual_seed(3)
    a = BayesByHypernet(tiny_net(), hidden=(8,))
    b = BayesByHypernet(tiny_net(), hidden=(8,))
    b.load_state_dict(a.state_dict())
    x, _ = batch()
    torch.manual_seed(4)
    pa = a.predict_logits(x, 3)
    torch.manual_seed(4)
    pb = b.predict_logits(x, 3)
    assert torch.equal(pa, pb)


def test_deterministic_parameters_train_by_point_estimate():
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    m = BayesByHypernet(net, hidden=(8,), include=lambda n, p: not n.startswith("1."))
    assert m.net[1].weight.requires_grad and not m.net[0].weight.requires_grad
    loss, _ = m.loss(*batch(), num_data=10)
    loss.backward()
    assert m.net[1].weight.grad is not None


def test_deterministic_module_names_keep_a_bayesian_subnetwork():
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    m = BayesByHypernet(net, hidden=(8,), deterministic=["0", "norm"])
    assert m.spec.names == ("3.weight", "3.bias") and m.spec.dim == 27
    assert m.net[0].weight.requires_grad and m.net[1].weight.requires_grad
    loss, _ = m.loss(*batch(), num_data=10)
    loss.backward()
    assert m.net[0].weight.grad is not None and m.net[0].weight.grad.abs().sum() > 0
    # with include too, a parameter is generated only where both choose it
    both = BayesByHypernet(
        net, hidden=(8,), deterministic=["norm"], include=lambda n, p: n.endswith("weight")
    )
    assert both.spec.names == ("0.weight", "3.weight")
    with pytest.raises(ValueError, match=r"no module named 'fc'.*'0', '1', '2', '3'"):
        BayesByHypernet(net, hidden=(8,), deterministic=["fc"])
    with pytest.raises(ValueError, match=r"to generate \(include / deterministic left out all"):
        BayesByHypernet(net, hidden=(8,), deterministic=["0", "1", "3"])


def test_the_net_copy_holds_no_generated_numbers():
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    keep_norm = {"hidden": (8,), "include": lambda n, p: not n.startswith("1.")}
    m = BayesByHypernet(net, **keep_norm)
    # only the point estimates stay parameters of the copy; the generated ones keep their shape
    assert [n for n, _ in m.net.named_parameters()] == ["1.weight", "1.bias"]
    assert m.net[0].weight.shape == (8, 6) and m.net[0].weight.untyped_storage().nbytes() == 4
    assert not any(k.startswith(("net.0.", "net.3.")) for k in m.state_dict())
    with torch.no_grad():  # in-place updates over parameters() (e.g. an EMA) still work
        for p in m.parameters():
            p.add_(0.01)
    m.double()
    assert m.net[0].weight.dtype == torch.float64 and m.net[3].bias.untyped_storage().nbytes() == 8
    x, y = batch()
    m.loss(x.double(), y, num_data=10)[0].backward()
    # files saved before the release hold the net's initial values there: they still load
    saved = m.state_dict()
    saved["net.0.weight"] = torch.randn(8, 6, dtype=torch.float64)
    other = BayesByHypernet(net, **keep_norm).double()
    other.load_state_dict(saved)
    m.eval()
    other.eval()
    torch.manual_seed(1)
    a = m.predict_logits(x.double(), 2)
    torch.manual_seed(1)
    assert torch.equal(a, other.predict_logits(x.double(), 2))


def test_regression_likelihood():
    m = BayesByHypernet(nn.Linear(1, 1), hidden=(4,), likelihood="gaussian", noise_scale=2.0)
    loss, _ = m.loss(torch.randn(8, 1), torch.randn(8), num_data=8)
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 1, "kl": "nn_full", "weight_noise": None}, "must be an int >= 2"),
        ({"num_samples": 0}, "num_samples must be an int >= 1"),
        ({"noise_dim": 0}, "noise_dim"),
        ({"nll": "sum"}, "unknown nll 'sum'; allowed"),
        ({"kl": "kde"}, "unknown kl estimator 'kde'"),
        ({"generator": "big"}, "unknown generator 'big'"),
        ({"likelihood": "poisson"}, "unknown likelihood 'poisson'"),
        ({"likelihood": "gaussian"}, "needs noise_scale"),
        ({"chunk_size": 4, "generator": "layerwise"}, "chunk_size and num_chunks apply"),
        ({"generator": "affine"}, "generator='affine' has no hidden layers"),
        ({"noise_dim": "big"}, "noise_dim must be an int >= 1 or 'auto'"),
        ({"num_samples": "many"}, "num_samples must be an int >= 1 or 'auto'"),
        ({"prior_scale": -1.0}, "prior_scale"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BayesByHypernet(tiny_net(), hidden=(8,), **kwargs)


def test_bad_inputs_at_call_time():
    m = BayesByHypernet(tiny_net(), hidden=(8,), nll="split", num_samples=5)
    x, y = batch(3)
    with pytest.raises(ValueError, match="at least S=5"):
        m.loss(x, y, num_data=3)
    with pytest.raises(ValueError, match="num_data"):
        m.loss(*batch(), num_data=0)
    with pytest.raises(ValueError, match="no parameters"):
        BayesByHypernet(nn.ReLU())


def test_registry_builds_bbh_and_rejects_unknown_options():
    m = bbh.build("bbh", tiny_net(), noise_dim=2, hidden=(8,))
    assert isinstance(m, BayesByHypernet)
    with pytest.raises(ValueError, match="unknown option"):
        bbh.build("bbh", tiny_net(), noise_dims=2)
    with pytest.raises(ValueError, match="unknown method"):
        bbh.build("laplace", tiny_net())


def test_one_sample_with_the_jacobian_kl():
    """kl='jacobian' needs no second sample: S = 1 trains (the whole batch on the one sample)."""
    torch.manual_seed(0)
    m = BayesByHypernet(tiny_net(), hidden=(8,), num_samples=1)
    assert m.num_samples == 1 and m.resolved_options["kl"] == "jacobian"
    loss, logs = m.loss(torch.randn(6, 6), torch.randint(0, 3, (6,)), num_data=6)
    loss.backward()
    assert torch.isfinite(logs["kl"]) and torch.isfinite(loss)
    assert m.posterior.log_sigma_param.grad is not None


def test_jacobian_chunks_option():
    m = BayesByHypernet(tiny_net(), hidden=(8,), chunk_size=10, jacobian_chunks=2)
    loss, _ = m.loss(torch.randn(6, 6), torch.randint(0, 3, (6,)), num_data=6)
    loss.backward()
    assert torch.isfinite(loss) and m.kl_estimator.jacobian_chunks == 2
    with pytest.raises(ValueError, match="needs generator='chunked' with noise_sharing='aligned'"):
        BayesByHypernet(tiny_net(), hidden=(8,), noise="independent", jacobian_chunks=2)
    with pytest.raises(ValueError, match="apply only to kl='jacobian'"):
        BayesByHypernet(tiny_net(), hidden=(8,), kl="sivi", jacobian_chunks=2)


@pytest.mark.parametrize("num_samples", [1, 4, 5])
def test_antithetic_draws_come_in_mirrored_pairs(num_samples):
    """Sample i + ceil(S/2) is ``(-z, -eps)`` of sample i; an odd S leaves the middle one alone."""
    torch.manual_seed(0)
    m = BayesByHypernet(tiny_net(), hidden=(8,))
    post = m.posterior
    draw = post.sample(num_samples, antithetic=True)
    half = -(-num_samples // 2)
    pairs = num_samples - half
    torch.testing.assert_close(draw.noise[half:], -draw.noise[:pairs])
    eps = (draw.weights - draw.mean) / draw.sigma
    torch.testing.assert_close(eps[half:], -eps[:pairs], rtol=1e-4, atol=1e-4)
    # without it the S draws are independent: no sample mirrors another
    free = post.sample(4)
    assert not torch.allclose(free.noise[2:], -free.noise[:2])


def test_antithetic_pairs_keep_the_marginal_and_cancel_odd_noise():
    """Each antithetic sample is a draw of q (mean and std over many draws match the free
    sampler's); the pair mean of an affine generator's weights is its offset exactly."""
    torch.manual_seed(1)
    m = BayesByHypernet(tiny_net(), generator="layerwise", hidden=(), weight_noise=0.3)
    post = m.posterior
    with torch.no_grad():
        paired = torch.cat([post.sample(2, antithetic=True).weights for _ in range(3000)])
        free = torch.cat([post.sample(2).weights for _ in range(3000)])
        torch.testing.assert_close(paired.std(0), free.std(0), rtol=0.1, atol=0.0)
        pair = post.sample(2, antithetic=True).weights
        offset = post.generator.generate(torch.zeros(1, 1, m.posterior.generator.noise_dim))[0]
    torch.testing.assert_close(pair.mean(0), offset)


def test_presets_set_antithetic_and_noise_mixing():
    rec = BayesByHypernet(tiny_net(), hidden=(8,))
    assert rec.antithetic and rec.posterior.generator.noise_mixing is not None
    paper = BayesByHypernet.paper(tiny_net(), generator="chunked", hidden=(8,))
    assert not paper.antithetic and paper.posterior.generator.noise_mixing is None
    off = BayesByHypernet(tiny_net(), hidden=(8,), antithetic=False, noise_mixing=False)
    assert not off.antithetic and off.posterior.generator.noise_mixing is None
    # the preset's noise_mixing is for the chunked generator; layer-wise ones just leave it out
    BayesByHypernet(tiny_net(), generator="layerwise", hidden=(8,))


def test_jacobian_chunks_auto_subsamples_only_large_nets(monkeypatch):
    """``"auto"`` (default): 4 random chunks from AUTO_JACOBIAN_CHUNKS_FROM weights on, else all;
    never for a layer-wise generator, independent noise or another estimator."""
    from bbh.methods import bbh_options as bbh_module

    small = BayesByHypernet(tiny_net(), hidden=(8,), chunk_size=10)
    assert small.kl_estimator.jacobian_chunks is None  # 99 weights: the exact Gram
    monkeypatch.setattr(bbh_module, "AUTO_JACOBIAN_CHUNKS_FROM", 50)
    large = BayesByHypernet(tiny_net(), hidden=(8,), chunk_size=10)
    assert large.kl_estimator.jacobian_chunks == bbh_module.AUTO_JACOBIAN_CHUNKS
    loss, _ = large.loss(*batch(), num_data=12)
    loss.backward()
    assert torch.isfinite(loss)
    exact = BayesByHypernet(tiny_net(), hidden=(8,), chunk_size=10, jacobian_chunks=None)
    assert exact.kl_estimator.jacobian_chunks is None
    for options in (
        {"generator": "layerwise"},
        {"noise": "independent"},
        {"kl": "sivi"},
        {"preset": "paper"},
    ):
        m = bbh.build("bbh", tiny_net(), hidden=(8,), **options)  # "auto" stands aside
        assert getattr(m.kl_estimator, "jacobian_chunks", None) is None
    with pytest.raises(ValueError, match="None or 'auto'"):
        BayesByHypernet(tiny_net(), hidden=(8,), jacobian_chunks="some")
    # with more chunks "auto" takes a quarter of them: 83 weights in 28 chunks of 3 -> 7
    many = BayesByHypernet(tiny_net(), hidden=(8,), num_chunks=40)
    assert many.posterior.generator.num_chunks == 28
    assert many.kl_estimator.jacobian_chunks == 7


def test_sigma_per_unit_and_num_chunks_shrink_the_hypernet():
    """The scalable options: one sigma per output unit (per entry for vectors) and a smaller
    shared output layer from more chunks; the step trains every part."""
    net = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))  # D = 387
    base = BayesByHypernet(net, hidden=(8,))
    small = BayesByHypernet(net, hidden=(8,), sigma_per="unit", num_chunks=32)
    assert base.posterior.log_sigma_param.numel() == 387
    assert small.posterior.log_sigma_param.numel() == 16 + 16 + 3 + 3
    factored = BayesByHypernet(net, hidden=(8,), sigma_per="factored")
    assert factored.posterior.log_sigma_param.numel() == (16 + 20) + 16 + (3 + 16) + 3
    assert base.posterior.generator._out.weight.numel() == 8 * 49  # 8 chunks of 49
    assert small.posterior.generator._out.weight.numel() == 8 * 13  # 30 chunks of 13
    sigma = small.posterior.log_sigma
    assert sigma.shape == (387,)
    assert torch.equal(sigma[:320].view(16, 20), sigma[:320].view(16, 20)[:, :1].expand(16, 20))
    x, y = torch.randn(12, 20), torch.randint(0, 3, (12,))
    loss, _ = small.loss(x, y, num_data=100)
    loss.backward()
    for name, p in small.posterior.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert small.posterior.log_sigma_param.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs init_sigma"):
        BayesByHypernet.paper(net, generator="chunked", sigma_per="unit")
    with pytest.raises(ValueError, match="sigma_per"):
        BayesByHypernet(net, sigma_per="tensor")
    with pytest.raises(ValueError, match="chunk_size or num_chunks, not both"):
        BayesByHypernet(net, chunk_size=10, num_chunks=4)


def test_sigma_per_kernel_shares_a_scale_over_a_convolution_kernels_taps():
    """``sigma_per="kernel"``: one sigma per (output channel, input channel) kernel of a
    convolution, shared by its kh x kw taps; matrices and vectors keep one per weight."""
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4 * 36, 5)
    )
    model = BayesByHypernet(net, hidden=(8,), sigma_per="kernel")
    d = 54 + 3 + 12 + 4 + 720 + 5
    assert model.posterior.log_sigma.shape == (d,)
    assert model.posterior.log_sigma_param.numel() == 6 + 3 + 12 + 4 + 720 + 5
    with torch.no_grad():
        model.posterior.log_sigma_param.uniform_(-3, -1).div_(model.posterior.log_sigma_scale)
    sigma = model.posterior.log_sigma
    taps = sigma[:54].view(6, 9)  # conv 0's six kernels of nine taps
    assert torch.equal(taps, taps[:, :1].expand(6, 9))
    assert torch.unique(taps[:, 0]).numel() == 6
    assert torch.unique(sigma[57:]).numel() == d - 57  # the 1x1 conv and the matrix: per weight
    x, y = torch.randn(4, 2, 8, 8), torch.randint(0, 5, (4,))
    loss, _ = model.loss(x, y, num_data=100)
    loss.backward()
    assert model.posterior.log_sigma_param.grad.abs().min() > 0


def test_sigma_rate_sets_how_fast_log_sigma_learns():
    """``sigma_rate``: one Adam step at the default lr moves log sigma by about that much (the
    same start, sigma = weight_noise), twice that with the shared tensor scale (the weight's
    own step and its tensor's); it must be positive."""
    net = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 3))  # D > the small-net size
    moved = {}
    for rate, shared in ((1e-3, False), (1e-2, False), (1e-2, True)):
        torch.manual_seed(0)
        model = BayesByHypernet(net, hidden=(8,), sigma_rate=rate, sigma_tensor_scale=shared)
        before = model.posterior.log_sigma.detach().clone()
        torch.testing.assert_close(before, torch.full_like(before, math.log(0.01)))
        opt = torch.optim.Adam(model.parameters(), lr=model.default_lr)
        loss, _ = model.loss(torch.randn(16, 40), torch.randint(0, 3, (16,)), num_data=100)
        loss.backward()
        opt.step()
        moved[rate, shared] = (model.posterior.log_sigma.detach() - before).abs().max().item()
    assert moved[1e-3, False] == pytest.approx(1e-3, rel=0.01)
    assert moved[1e-2, False] == pytest.approx(1e-2, rel=0.01)
    assert moved[1e-2, True] == pytest.approx(2e-2, rel=0.01)
    with pytest.raises(ValueError, match="sigma_rate"):
        BayesByHypernet(net, sigma_rate=0.0)


def test_small_nets_get_the_affine_generator_and_64_samples():
    """``"auto"`` on a net of <= SMALL_NET_WEIGHTS weights: an affine generator with k = min(D,
    512), 64 samples on the whole batch; the generator stands aside where a chunked or hidden
    option is given; larger nets and the paper's setting keep theirs."""
    from bbh.hypernets import LayerwiseGenerator
    from bbh.methods import bbh_options as bbh_module

    small = BayesByHypernet(tiny_net())  # 83 weights
    gen = small.posterior.generator
    assert isinstance(gen, LayerwiseGenerator) and gen.noise_dim == 83
    assert small.num_samples == 64 and small.nll_mode.value == "mean"
    assert small.resolved_options["generator"] == "affine"
    assert small.resolved_options["hidden"] == () and small.resolved_options["noise_dim"] == 83
    loss, _ = small.loss(*batch(), num_data=100)
    loss.backward()
    assert torch.isfinite(loss)
    chunked = BayesByHypernet(tiny_net(), num_chunks=4)  # a chunked-only option asks for it
    assert chunked.resolved_options["generator"] == "chunked" and chunked.num_samples == 64
    few = BayesByHypernet(tiny_net(), num_samples=4)
    assert few.num_samples == 4 and few.nll_mode.value == "mean"
    assert few.resolved_options["generator"] == "affine"
    paper = BayesByHypernet.paper(tiny_net())
    assert paper.num_samples == 5 and paper.resolved_options["hidden"] == (64, 256, 512)
    wide = nn.Sequential(nn.Linear(100, 11))  # 1,111 weights
    assert bbh_module.SMALL_NET_WEIGHTS < 1111
    large = BayesByHypernet(wide)
    assert large.resolved_options["generator"] == "chunked" and large.num_samples == 2
    # a small net's model saved with the chunked generator before these options loads as saved
    state = BayesByHypernet(tiny_net(), generator="chunked").state_dict()
    options = BayesByHypernet.options_for_state_dict({}, state)
    BayesByHypernet(tiny_net(), **options).load_state_dict(state)


def test_a_small_subnetwork_of_a_large_net_keeps_the_two_split_samples():
    """Generating only a big net's output layer (<= SMALL_NET_WEIGHTS weights) gives it the
    affine generator, but not 64 samples on the whole batch: each is a pass through the net."""
    from bbh.methods import bbh_options as bbh_module

    net = nn.Sequential(nn.Linear(100, 30), nn.ReLU(), nn.Linear(30, 3))  # 3,123 weights
    head = BayesByHypernet(net, deterministic=["0"])  # 93 generated
    assert head.spec.dim == 93 < bbh_module.SMALL_NET_WEIGHTS
    assert head.resolved_options["generator"] == "affine"
    assert head.resolved_options["noise_dim"] == 93 and head.resolved_options["hidden"] == ()
    assert head.num_samples == 2 and head.nll_mode.value == "split"
    small = nn.Sequential(nn.Linear(10, 30), nn.ReLU(), nn.Linear(30, 3))  # 423: all small
    assert BayesByHypernet(small, deterministic=["0"]).num_samples == 64


def test_auto_chunk_count_and_models_saved_with_another_one():
    """``num_chunks="auto"``: about ``sqrt(16 D / 192)`` chunks (never fewer than 16); a model
    saved with another chunk count than the default loads with its own chunk size."""
    from bbh.methods.bbh_options import auto_num_chunks

    net = nn.Linear(100, 50)  # D = 5,050
    m = BayesByHypernet(net, num_chunks="auto")
    assert auto_num_chunks(5050, 16, 64, 8, True) == 21
    assert m.posterior.generator.num_chunks == 21
    assert BayesByHypernet(net).posterior.generator.num_chunks == 16  # the default
    assert auto_num_chunks(431_080, 16, 64, 8, True) == 190  # LeNet-5
    assert auto_num_chunks(2_000, 16, 64, 8, True) == 16
    state = m.state_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        BayesByHypernet(net).load_state_dict(state)
    options = BayesByHypernet.options_for_state_dict({}, state)
    assert options["chunk_size"] == 241
    BayesByHypernet(net, **options).load_state_dict(state)
    with pytest.raises(ValueError, match="num_chunks must be"):
        BayesByHypernet(net, num_chunks="many")


def test_a_state_saved_under_the_old_hypernet_name_loads_as_the_same_posterior():
    """Files saved before the posterior was named ``posterior`` hold it under ``hypernet.``:
    they load to the same weights, and ``options_for_state_dict`` reads their chunk size."""
    torch.manual_seed(0)
    net = nn.Linear(100, 50)  # D = 5,050: the chunked generator
    saved = BayesByHypernet(net, num_chunks="auto")
    old = {
        ("hypernet." + k[len("posterior.") :] if k.startswith("posterior.") else k): v
        for k, v in saved.state_dict().items()
    }
    assert any(k.startswith("hypernet.") for k in old)
    options = BayesByHypernet.options_for_state_dict({}, old)
    assert options["chunk_size"] == 241
    loaded = BayesByHypernet(net, **options)
    result = loaded.load_state_dict(old)
    assert not result.missing_keys and not result.unexpected_keys
    for (name, a), b in zip(saved.state_dict().items(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    # the parameters keep their order of old (an optimiser's saved state is by position)
    disc = BayesByHypernet(net, kl="discriminator", weight_noise=None, num_samples=2)
    names = [n.split(".")[0] for n, _ in disc.named_parameters()]
    assert names.index("kl_estimator") < names.index("posterior")


def regression_net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 2))


def test_collapsed_log_marginal_and_readout_draws_are_the_conjugate_posterior():
    """``bbh.posteriors.last_layer``: the Woodbury form equals ``log N(y; 0, s^2 Phi Phi^T +
    noise^2 I)`` computed directly, and the readout draws have the exact posterior's moments."""
    from bbh.posteriors.last_layer import log_marginal, readout_posterior, sample_readout

    g = torch.Generator().manual_seed(0)
    phi, y = torch.randn(3, 7, 4, generator=g), torch.randn(7, 2, generator=g)
    noise, prior = 0.7, 1.3
    got = log_marginal(phi, y, noise, prior)
    for s in range(3):
        cov = prior**2 * phi[s] @ phi[s].T + noise**2 * torch.eye(7)
        mvn = torch.distributions.MultivariateNormal(torch.zeros(7), cov.double())
        want = sum(mvn.log_prob(y[:, o].double()) for o in range(2))
        torch.testing.assert_close(got[s], want)
    chol, mean, _ = readout_posterior(phi[:1], y, noise, prior)
    draws = sample_readout(phi[:1].expand(20_000, -1, -1), y, noise, prior, generator=g)
    torch.testing.assert_close(draws.mean(0), mean[0], atol=0.02, rtol=0)
    cov = torch.cholesky_inverse(chol[0])
    emp = torch.cov(draws[:, :, 0].T)
    torch.testing.assert_close(emp, cov, atol=0.02, rtol=0)


def test_exact_last_layer_trains_the_rest_and_samples_the_readout():
    """``last_layer="exact"``: the hypernet generates every weight but the output layer's, the
    loss is the collapsed ELBO (full batch), predictions condition on the training data, and a
    saved model predicts the same after loading."""
    torch.manual_seed(0)
    net = regression_net()
    m = BayesByHypernet(net, likelihood="gaussian", noise_scale=0.5, last_layer="exact")
    assert m.spec.dim == 18 and m.predictive_spec.dim == 32
    assert m.sample_weights(3).shape == (3, 32)  # before training: the readout's prior
    x = torch.randn(30, 2)
    y = torch.stack([x[:, 0].sin(), x[:, 1]], 1)
    loss, _ = m.loss(x, y, num_data=30)
    loss.backward()
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert all(n.startswith("posterior.") for n in trainable)
    assert all(p.grad is not None for n, p in m.named_parameters() if p.requires_grad)
    torch.testing.assert_close(m.conditioning_x, x)
    fit(m, x, y, steps=300, batch_size=30, lr=1e-2, log_every=300)
    with torch.no_grad():
        mean = m.predict_logits(x, 200).mean(0)
    assert float((mean - y).pow(2).mean()) < 0.1  # the conditioned readout fits the data
    with pytest.raises(ValueError, match="full batch"):
        m.loss(x[:10], y[:10], num_data=30)
    state = m.state_dict()
    again = BayesByHypernet(
        regression_net(), likelihood="gaussian", noise_scale=0.5, last_layer="exact"
    )
    again.load_state_dict(state)
    torch.testing.assert_close(again.conditioning_y, m.conditioning_y)  # (fit shuffles)
    torch.manual_seed(1)
    a = m.sample_weights(4)
    torch.manual_seed(1)
    torch.testing.assert_close(again.sample_weights(4), a)


def test_exact_last_layer_refuses_what_it_cannot_integrate():
    def build(net: nn.Module, **kw):
        options = dict(likelihood="gaussian", noise_scale=1.0, last_layer="exact")
        return BayesByHypernet(net, **{**options, **kw})

    with pytest.raises(ValueError, match="likelihood='gaussian'"):
        build(tiny_net(), likelihood="categorical", noise_scale=None)
    with pytest.raises(ValueError, match=r"bare nn\.Linear"):
        build(nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"nn\.Linear output layer"):
        build(nn.Sequential(nn.Conv1d(1, 1, 3), nn.Flatten()))
    with pytest.raises(ValueError, match="nll does not apply"):
        build(regression_net(), nll="split")
    with pytest.raises(ValueError, match="include and deterministic keep"):
        build(regression_net(), include=lambda name, p: name.startswith("0."))
    with pytest.raises(ValueError, match="last_layer"):
        build(regression_net(), last_layer="closed")
    after = build(nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1), nn.Tanh()))
    with pytest.raises(ValueError, match="something runs after it"):
        after.loss(torch.randn(8, 2), torch.randn(8), num_data=8)
