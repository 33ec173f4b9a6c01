"""The Jacobian (linearised semi-implicit) KL: exact for affine generators, right tangents."""

import math

import pytest
import torch
from torch import nn
from torch.func import jvp

from bbh.divergences import JacobianKL, make_kl_estimator
from bbh.divergences.jacobian import block_grams, entropy_linearised
from bbh.functional import ParamSpec
from bbh.hypernets import ChunkedGenerator, LayerwiseGenerator
from bbh.posteriors.implicit import ImplicitPosterior
from bbh.priors import GaussianPrior


@pytest.fixture
def float64():
    """Run the test in float64 (exact comparisons), float32 again afterwards."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _spec(d_in=6, d_hidden=5, d_out=3):
    return ParamSpec.from_module(
        nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))
    )


def _generators(spec, hidden, noise):
    torch.manual_seed(0)
    return [
        LayerwiseGenerator(spec, noise_dim=3, hidden=hidden, noise=noise),
        ChunkedGenerator(spec, noise_dim=3, hidden=hidden, noise=noise, chunk_size=7),
        _mixing(ChunkedGenerator(spec, 3, hidden, noise, chunk_size=7, noise_mixing=True)),
    ]


def _mixing(gen):
    """A chunked generator whose linear noise path is in use (it starts at zero)."""
    with torch.no_grad():
        gen.noise_mixing.normal_(0, 0.5)
    return gen


def _full_jacobian(gen, z):
    """Reference ``dG/dz`` for one noise draw ``z [1, n, k]``: ``[D, n * k]``."""
    return torch.autograd.functional.jacobian(
        lambda v: gen.generate(v.reshape(z.shape))[0], z.reshape(-1)
    )


@pytest.mark.parametrize("noise", ["aligned", "independent"])
@pytest.mark.parametrize("hidden", [(), (8, 4)])
def test_tangents_match_autograd_jvp(noise, hidden):
    spec = _spec()
    for gen in _generators(spec, hidden, noise):
        z = gen.draw_noise(2)
        dz = torch.randn(4, *z.shape)
        w, dw = gen.generate_with_tangents(z, dz)
        torch.testing.assert_close(w, gen.generate(z))
        for t in range(4):
            _, ref = jvp(gen.generate, (z,), (dz[t],))
            torch.testing.assert_close(dw[t], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("noise", ["aligned", "independent"])
def test_entropy_is_exact_for_affine_generators(noise, float64):
    """``hidden=()``: q = N(b, A A^T + Sigma) and the estimate is its entropy, whatever z."""
    spec = _spec()
    for gen in _generators(spec, (), noise):
        post = ImplicitPosterior(gen, init_sigma=0.05)
        with torch.no_grad():
            post.log_sigma_param.uniform_(-4, -1)  # anisotropic noise
        z = gen.draw_noise(1)
        jac = _full_jacobian(gen, z)  # [D, n k]: constant for an affine G
        cov = jac @ jac.T + torch.diag(post.sigma() ** 2)
        exact = 0.5 * torch.logdet(2 * math.pi * math.e * cov)
        got = entropy_linearised(post, gen.draw_noise(3))
        torch.testing.assert_close(got, exact)


def test_entropy_of_an_affine_generator_with_more_noise_than_weights(float64):
    """k > D takes the D x D determinant; the value is still the exact Gaussian entropy."""
    spec = _spec(2, 2, 1)  # D = 9
    torch.manual_seed(0)
    gen = LayerwiseGenerator(spec, noise_dim=16, hidden=())
    post = ImplicitPosterior(gen, init_sigma=0.05)
    jac = _full_jacobian(gen, gen.draw_noise(1))  # [9, 16]
    cov = jac @ jac.T + torch.diag(post.sigma() ** 2)
    exact = 0.5 * torch.logdet(2 * math.pi * math.e * cov)
    torch.testing.assert_close(entropy_linearised(post, gen.draw_noise(2)), exact)


@pytest.mark.parametrize("noise_dim", [9, 16])
def test_affine_entropy_stays_finite_when_sigma_collapses(noise_dim):
    """k >= D: A A^T carries the covariance and sigma may shrink by orders of magnitude (a
    direction the ELBO does not see); in float32 the entropy is still the exact one and finite,
    with finite gradients (a float32 Gram of Sigma^-1 lost positive definiteness there)."""
    spec = _spec(2, 2, 1)  # D = 9
    torch.manual_seed(0)
    gen = LayerwiseGenerator(spec, noise_dim=noise_dim, hidden=())
    post = ImplicitPosterior(gen, init_sigma=0.05)
    with torch.no_grad():
        post.log_sigma_param.uniform_(-14, -1)
    got = entropy_linearised(post, gen.draw_noise(1))
    got.backward()
    jac = _full_jacobian(gen, gen.draw_noise(1)).double()
    cov = jac @ jac.T + torch.diag(post.sigma().double().detach() ** 2)
    exact = 0.5 * torch.logdet(2 * math.pi * math.e * cov)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=1e-4)
    assert all(torch.isfinite(p.grad).all() for p in post.parameters() if p.grad is not None)


def test_kl_matches_the_closed_form_gaussian_kl(float64):
    """Affine generators: the layer-wise one's KL is the closed form from any draw (its cross
    term is exact over z too); the chunked one's matches it in expectation."""
    spec = _spec()
    layerwise, chunked = _generators(spec, (), "aligned")[:2]
    prior = GaussianPrior(1.5)
    for gen, draws in ((layerwise, 1), (chunked, 20000)):
        post = ImplicitPosterior(gen, init_sigma=0.3)
        z = gen.draw_noise(1)
        jac = _full_jacobian(gen, z)
        b = gen.generate(torch.zeros_like(z))[0]
        cov = jac @ jac.T + torch.diag(post.sigma() ** 2)
        d, s2 = spec.dim, 2.25
        exact = 0.5 * (cov.trace() / s2 + b @ b / s2 - d + d * math.log(s2) - torch.logdet(cov))
        est = JacobianKL()(post.sample(draws), prior, post)
        if draws == 1:
            torch.testing.assert_close(est, exact)
        else:
            assert abs(est.item() - exact.item()) < 0.01 * exact.item()


def test_gradients_reach_generator_and_sigma():
    spec = _spec()
    gen = _generators(spec, (8,), "aligned")[1]
    post = ImplicitPosterior(gen, init_sigma=0.1)
    kl = JacobianKL(jacobian_samples=2)(post.sample(4), GaussianPrior(), post)
    kl.backward()
    grad = post.log_sigma_param.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert all(p.grad is not None for p in gen.parameters())


def test_block_grams_of_uneven_and_even_segments():
    a = torch.randn(3, 2, 10, dtype=torch.float64, requires_grad=True)
    w = torch.rand(10, dtype=torch.float64, requires_grad=True)
    for segments in [(10,), (4, 4, 2), (3, 5, 2)]:
        got = block_grams(a, segments, w)
        parts = zip(a.split(list(segments), -1), w.split(list(segments)), strict=True)
        want = torch.stack([torch.einsum("ajd,bjd->jab", p * v, p) for p, v in parts], 1)
        torch.testing.assert_close(got, want)
        assert torch.autograd.gradcheck(lambda a, w, s=segments: block_grams(a, s, w), (a, w))


def test_needs_a_semi_implicit_posterior():
    spec = _spec()
    gen = _generators(spec, (8,), "aligned")[0]
    post = ImplicitPosterior(gen, init_sigma=None)
    with pytest.raises(ValueError, match="semi-implicit"):
        JacobianKL()(post.sample(2), GaussianPrior(), post)
    with pytest.raises(ValueError, match="init_sigma must be a positive number"):
        ImplicitPosterior(gen, init_sigma=-1.0)
    with pytest.raises(ValueError, match="unknown kl estimator 'jacobian'"):
        make_kl_estimator("jacobian", samples_only=True)


def test_semi_implicit_bound_is_exact_when_the_generator_is_constant_and_bounds_otherwise(float64):
    """SIVI's bound: exact for q = N(b, Sigma) (G ignores z); above the exact KL in expectation."""
    spec = _spec()
    gen = _generators(spec, (), "aligned")[0]
    post = ImplicitPosterior(gen, init_sigma=0.2)
    prior = GaussianPrior(1.0)
    sivi = make_kl_estimator("sivi")
    with torch.no_grad():
        for g in gen.generators:
            g[0].weight[:, :3].zero_()  # G(z) = b: q = N(b, sigma^2 I)
    b = gen.generate(torch.zeros(1, 1, 3))[0]
    d, s2 = spec.dim, 0.04
    exact = 0.5 * (d * s2 + b @ b - d - d * math.log(s2))
    est = torch.stack([sivi(post.sample(200), prior, post) for _ in range(20)]).mean()
    assert abs(est.item() - exact.item()) < 0.02 * exact.item()
    with torch.no_grad():
        for g in gen.generators:
            g[0].weight[:, :3].normal_(0, 0.3)  # now G varies with z
    jac = _full_jacobian(gen, gen.draw_noise(1))
    cov = jac @ jac.T + s2 * torch.eye(d)
    exact = 0.5 * (cov.trace() + b @ b - d - torch.logdet(cov))
    est = torch.stack([sivi(post.sample(200), prior, post) for _ in range(20)]).mean()
    assert est.item() > exact.item()


def _generic_grams(gen, z, log_sigma):
    """The unfused path: tangents along the unit directions, then ``block_grams``."""
    k = z.shape[-1]
    tangents = torch.eye(k, dtype=z.dtype)[:, None, None, :].expand(k, *z.shape[:2], k)
    _, jac = gen.generate_with_tangents(z, tangents)
    return block_grams(jac, gen.noise_segments, torch.exp(-2 * log_sigma))


@pytest.mark.parametrize("noise", ["aligned", "independent"])
@pytest.mark.parametrize("chunk_size", [7, 11, 53])  # padded, padded, one unpadded chunk
@pytest.mark.parametrize("tile_floats", [1, 1 << 18])  # many column tiles, one
@pytest.mark.parametrize("mixing", [False, True])
def test_fused_chunked_grams_equal_the_generic_path(
    noise, chunk_size, tile_floats, mixing, monkeypatch
):
    """``ChunkedGenerator.jacobian_grams`` = ``block_grams`` of the tangents: values, gradients."""
    from bbh.hypernets import chunked

    monkeypatch.setattr(chunked, "CPU_TILE_FLOATS", tile_floats)
    torch.manual_seed(1)
    spec = _spec()  # D = 53
    gen = ChunkedGenerator(
        spec, 3, (8, 4), noise, chunk_size=chunk_size, noise_mixing=mixing
    ).double()
    if mixing:
        _mixing(gen)
    z = gen.draw_noise(2)
    log_w = torch.randn(spec.dim, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(2, len(gen.noise_segments), 3, 3, dtype=torch.float64)
    results = []
    for grams in (_generic_grams, type(gen).jacobian_grams):
        gen.zero_grad()
        log_w.grad = None
        got = grams(gen, z, log_w)
        (got * probe).sum().backward()
        results.append([got, log_w.grad, *[p.grad for p in gen.parameters()]])
    for want, got in zip(*results, strict=True):
        torch.testing.assert_close(got, want)


def test_fused_chunk_gram_gradcheck(monkeypatch):
    from bbh.hypernets import chunked

    monkeypatch.setattr(chunked, "CPU_TILE_FLOATS", 1)  # 256-column tiles: several here
    dh = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(600, 5, dtype=torch.float64, requires_grad=True)
    log_sigma = torch.randn(1793, dtype=torch.float64, requires_grad=True)  # 3 chunks, padded
    assert len(chunked._tiles(dh, 600)) == 3
    assert torch.autograd.gradcheck(chunked._ChunkGram.apply, (dh, weight, log_sigma, None))
    picked = torch.tensor([2, 0])  # a subset of the chunks, the padded one included
    sub = dh[:, :2].detach().requires_grad_(True)
    assert torch.autograd.gradcheck(chunked._ChunkGram.apply, (sub, weight, log_sigma, picked))


def test_entropy_uses_the_fused_grams_of_the_chunked_generator():
    torch.manual_seed(2)
    gen = ChunkedGenerator(_spec(), 3, (8, 4), chunk_size=7).double()
    post = ImplicitPosterior(gen, init_sigma=0.1)
    z = gen.draw_noise(2)
    got = entropy_linearised(post, z)
    gram = _generic_grams(gen, z, post.log_sigma)
    logdet = torch.logdet(torch.eye(3, dtype=torch.float64) + gram).sum(1).mean()
    d = post.log_sigma.numel()
    want = post.log_sigma.sum() + 0.5 * d * math.log(2 * math.pi * math.e) + 0.5 * logdet
    torch.testing.assert_close(got, want)


def test_gram_from_random_chunks_is_unbiased():
    """``chunks=m``: ``C/m`` times the Gram of m random chunks; its mean over draws is the Gram."""
    torch.manual_seed(3)
    gen = ChunkedGenerator(_spec(), 3, (8, 4), chunk_size=7).double()  # 8 chunks
    z = gen.draw_noise(1)
    log_w = torch.randn(gen.spec.dim, dtype=torch.float64)
    full = gen.jacobian_grams(z, log_w)
    one = gen.jacobian_grams(z, log_w, chunks=2)
    assert not torch.allclose(one, full)
    # every pair of chunks equally likely: the mean over many draws converges to the full Gram
    mean = torch.stack([gen.jacobian_grams(z, log_w, chunks=2) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, full, rtol=0.05, atol=0.05 * full.abs().max().item())
    torch.testing.assert_close(gen.jacobian_grams(z, log_w, chunks=8), full)
    with pytest.raises(ValueError, match="aligned noise"):
        ChunkedGenerator(_spec(), 3, (8,), "independent").jacobian_grams(z, log_w, chunks=2)
    with pytest.raises(ValueError, match="jacobian_chunks must be an int >= 1"):
        JacobianKL(jacobian_chunks=0)


@pytest.mark.parametrize("columns", [False, True])
def test_shared_sigmas_give_the_same_kl_as_the_expanded_per_weight_sigma(float64, columns):
    """``sigma_blocks``: one scale per row (and, with ``sigma_columns``, times one per column),
    expanded to ``[D]``; the Jacobian KL and its gradient equal those of a per-weight posterior
    holding the expanded values (the gradient summed over each scale's weights)."""
    spec = _spec()  # D = 53: Linear(6, 5) and Linear(5, 3)
    blocks = [(5, 6), (5, 1), (3, 5), (3, 1)]
    torch.manual_seed(4)
    gen = _mixing(ChunkedGenerator(spec, 3, (8, 4), chunk_size=7, noise_mixing=True))
    shared = ImplicitPosterior(gen, 0.1, sigma_blocks=blocks, sigma_columns=columns)
    assert shared.log_sigma_param.numel() == (27 if columns else 16)
    torch.testing.assert_close(shared.log_sigma, torch.full((53,), math.log(0.1)))
    with torch.no_grad():
        shared.log_sigma_param.uniform_(-3, -1)
    per_weight = ImplicitPosterior(gen, init_sigma=0.1)
    with torch.no_grad():
        per_weight.log_sigma_param.copy_(shared.log_sigma)
    first = shared.log_sigma[:30].view(5, 6)
    if columns:  # log sigma_ij = a_i + b_j: every 2 x 2 minor of the log-scales is additive
        diff = first[:, 1:] - first[:, :1]  # b_j - b_0, the same in every row
        torch.testing.assert_close(diff, diff[:1].expand(5, 5))
        assert not torch.allclose(first[:, 1:], first[:, :1])
    else:
        assert torch.equal(first, first[:, :1].expand(5, 6))
    kl, prior = JacobianKL(), GaussianPrior(1.0)
    torch.manual_seed(5)
    a = kl(shared.sample(2), prior, shared)
    torch.manual_seed(5)
    b = kl(per_weight.sample(2), prior, per_weight)
    torch.testing.assert_close(a, b)
    (ga,) = torch.autograd.grad(a, shared.log_sigma_param)
    (gb,) = torch.autograd.grad(b, per_weight.log_sigma_param)
    g1, g2 = gb[:30].view(5, 6), gb[35:50].view(3, 5)
    parts = [g1.sum(1), g1.sum(0)] if columns else [g1.sum(1)]
    parts += (
        [gb[30:35], g2.sum(1), g2.sum(0), gb[50:]] if columns else [gb[30:35], g2.sum(1), gb[50:]]
    )
    torch.testing.assert_close(ga, torch.cat(parts) * shared.log_sigma_scale)
    for bad in ([(53, 2)], [(0, 53)], []):
        with pytest.raises(ValueError, match="sigma_blocks must be"):
            ImplicitPosterior(gen, init_sigma=0.1, sigma_blocks=bad)


@pytest.mark.parametrize("num_samples, antithetic", [(1, False), (3, True), (4, False)])
def test_large_nets_keep_a_seed_not_the_noise(monkeypatch, num_samples, antithetic):
    """From ``RECOMPUTE_NOISE_FROM`` weights on, a training draw redraws eps in the backward:
    the gradients are those of ``mean + sigma * eps`` with its eps, the mirrored pairs stay,
    and the graph keeps the drawn noise (``[ceil(S / 2), D]`` with mirrored pairs) no more."""
    import bbh.posteriors.implicit as implicit

    torch.manual_seed(0)
    gen = ChunkedGenerator(_spec(), noise_dim=3, hidden=(8,), num_chunks=2)
    post = ImplicitPosterior(gen, init_sigma=0.1)
    params = list(post.parameters())
    dim = post.sigma().numel()
    weights_of = torch.linspace(-1, 1, dim)

    def loss(w: torch.Tensor) -> torch.Tensor:
        return (w.sin() * weights_of).sum()

    def saved_sample_sized(threshold: int) -> int:
        """Floats the draw's graph keeps in tensors of whole samples (k x D)."""
        monkeypatch.setattr(implicit, "RECOMPUTE_NOISE_FROM", threshold)
        sizes: list[int] = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            post.sample(num_samples, antithetic=antithetic)
        return sum(n for n in sizes if n % dim == 0 and n >= dim)

    drawn = -(-num_samples // 2) if antithetic else num_samples
    assert saved_sample_sized(dim) == saved_sample_sized(dim + 1) - drawn * dim
    monkeypatch.setattr(implicit, "RECOMPUTE_NOISE_FROM", dim)
    draw = post.sample(num_samples, antithetic=antithetic)
    eps = ((draw.weights - draw.mean) / draw.sigma).detach()
    if antithetic:
        torch.testing.assert_close(eps[2], -eps[0])
    got = torch.autograd.grad(loss(draw.weights), params, retain_graph=True)
    ref = torch.autograd.grad(loss(torch.addcmul(draw.mean, draw.sigma, eps)), params)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("num_samples,half", [(1, 1), (2, 1), (3, 2), (4, 2), (3, 3)])
def test_mirrored_noisy_weights_match_addcmul_on_the_mirrored_noise(num_samples, half):
    """The fused draw ``mean + sigma * eps`` (rows from ``half`` on take ``-eps``) has the values
    and the gradients of ``addcmul`` on the mirrored noise, for pairs, odd S and no mirror."""
    from bbh.posteriors.implicit import _mirrored, _MirroredNoisyWeights

    torch.manual_seed(0)
    mean = torch.randn(num_samples, 7, dtype=torch.float64, requires_grad=True)
    sigma = torch.rand(7, dtype=torch.float64).add(0.1).requires_grad_()
    eps = torch.randn(half, 7, dtype=torch.float64)
    weights_of = torch.randn(num_samples, 7, dtype=torch.float64)
    fused = _MirroredNoisyWeights.apply(mean, sigma, eps)
    plain = torch.addcmul(mean, sigma, _mirrored(eps, num_samples))
    torch.testing.assert_close(fused, plain, rtol=0, atol=0)
    grads = torch.autograd.grad((fused.sin() * weights_of).sum(), [mean, sigma])
    expected = torch.autograd.grad((plain.sin() * weights_of).sum(), [mean, sigma])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
