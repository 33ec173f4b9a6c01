import pytest
import torch
from torch import nn

from bbh.functional import ParamSpec
from bbh.hypernets import ChunkedGenerator, LayerwiseGenerator


@pytest.fixture
def spec():
    return ParamSpec.from_module(nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)))


def test_layerwise_shapes_and_paper_architecture(spec):
    gen = LayerwiseGenerator(spec, noise_dim=4)
    assert len(gen.generators) == len(spec)
    first = gen.generators[0]
    sizes = [(m.in_features, m.out_features) for m in first if isinstance(m, nn.Linear)]
    assert sizes == [(5, 64), (64, 256), (256, 512), (512, 35)]
    assert all(m.negative_slope == 0.1 for m in first if isinstance(m, nn.LeakyReLU))
    assert all(torch.all(m.bias == 0) for m in first if isinstance(m, nn.Linear))
    w = gen(6)
    assert w.shape == (6, spec.dim)
    assert not torch.allclose(w[0], w[1])  # fresh noise per sample


def test_aligned_vs_independent_noise(spec):
    torch.manual_seed(0)
    aligned = LayerwiseGenerator(spec, noise_dim=1, hidden=(8,))
    independent = LayerwiseGenerator(spec, noise_dim=1, hidden=(8,), noise="independent")
    independent.load_state_dict(aligned.state_dict())
    torch.manual_seed(1)
    a = aligned(3)
    torch.manual_seed(1)
    b = independent(3)
    # the first tensor uses the first noise draw in both modes; later tensors differ
    n0 = spec.entries[0].numel
    torch.testing.assert_close(a[:, :n0], b[:, :n0])
    assert not torch.allclose(a[:, n0:], b[:, n0:])


@pytest.mark.parametrize("noise", ["aligned", "independent"])
def test_chunked_generator(spec, noise):
    gen = ChunkedGenerator(spec, noise_dim=3, hidden=(16, 8), chunk_size=4, noise=noise)
    assert gen.num_chunks == -(-spec.dim // 4)
    w = gen(5)
    assert w.shape == (5, spec.dim)
    w.sum().backward()
    assert gen.embeddings.grad is not None


def test_chunked_default_size_stays_near_d():
    big = ParamSpec.from_module(nn.Linear(1000, 400))
    gen = ChunkedGenerator(big)
    n_params = sum(p.numel() for p in gen.parameters())
    assert n_params < 4 * big.dim
    layerwise_estimate = 512 * big.dim
    assert n_params < layerwise_estimate / 100


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise_dim": 0}, "noise_dim"),
        ({"hidden": (4, 0)}, "hidden"),
        ({"noise": "shared"}, "unknown noise mode 'shared'"),
    ],
)
def test_bad_arguments(spec, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerwiseGenerator(spec, **kwargs)
    with pytest.raises(ValueError, match=match):
        ChunkedGenerator(spec, **kwargs)


def test_chunked_offset_starts_at_init_and_noise_is_small():
    big = ParamSpec.from_module(nn.Linear(50, 40))
    init = torch.randn(big.dim)
    gen = ChunkedGenerator(big, init=init, init_noise_scale=0.1)
    w = gen(8)
    assert (w.mean(0) - init).abs().mean() < 0.5 * init.abs().mean()
    with pytest.raises(ValueError, match="init must have shape"):
        ChunkedGenerator(big, init=torch.zeros(3))
