"""Bad input at every method's public boundary: one message naming the argument, what was
expected and what came (issue 10's table), and checks that change nothing when the input is good."""

from __future__ import annotations

import copy
import inspect
import typing

import numpy as np
import pytest
import torch
from method_helpers import make_net, small_options
from torch import nn

from bbh.methods import METHODS, available, build
from bbh.nets import LeNet5
from bbh.validation import InvalidArgument, values_prechecked

NAMES = available()


def _mlp(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    net, x, y = make_net("mlp")  # MLP(6, [8], 3), x [8, 6], y in [0, 3)
    return build(name, net, **small_options(name)), x, y


@pytest.mark.parametrize("name", NAMES)
def test_wrong_feature_size_names_x_and_the_first_layer(name: str) -> None:
    method, _, y = _mlp(name)
    bad = torch.randn(8, 5)
    message = (
        r"x has shape \[8, 5\], which MLP cannot take; its first layer 'layers.0' takes 6 "
        r"features: RuntimeError: "
    )
    with pytest.raises(ValueError, match=message):
        method.predict(bad, 2)
    with pytest.raises(ValueError, match=message):
        method.loss(bad, y, num_data=10)


@pytest.mark.parametrize("name", ["bbh", "map", "ensemble"])
def test_unbatched_image_is_named(name: str) -> None:
    method = build(name, LeNet5(), **small_options(name))
    with pytest.raises(
        ValueError,
        match=r"x has shape \[1, 28, 28\], which LeNet5 cannot take; its first layer 'conv1' "
        r"takes \[B, 1, H, W\]: RuntimeError",
    ):
        method.predict(torch.rand(1, 28, 28), 2)
    assert method.predict(torch.rand(3, 1, 28, 28), 2).shape == (3, 10)  # and the right shape works


@pytest.mark.parametrize("name", NAMES)
def test_float64_and_numpy_inputs_are_cast(name: str) -> None:
    method, x, y = _mlp(name)
    torch.manual_seed(0)
    expected = method.predict(x, 3)
    for other in (x.double(), x.numpy(), x.numpy().astype(np.float64)):
        torch.manual_seed(0)
        got = method.predict(other, 3)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected)
    loss, _ = method.loss(x.double(), y, num_data=10)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("name", NAMES)
def test_integer_inputs_a_float_net_cannot_take_and_other_devices_are_errors(name: str) -> None:
    method, x, _ = _mlp(name)
    # integer inputs reach the net unchanged (token ids); a float net says why it refuses them
    message = r"x has shape \[8, 6\], which MLP cannot take.*integer inputs go to the net unchanged"
    with pytest.raises(ValueError, match=message + r".*x.float\(\) / 255"):
        method.predict((x * 10).to(torch.uint8), 2)
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor \[B, ...\] or a tuple, list or"):
        method.predict(x.tolist(), 2)
    with pytest.raises(ValueError, match=r"x is on meta but the model is on cpu; move it"):
        method.predict(x.to("meta"), 2)
    with pytest.raises(ValueError, match=r"x must be a non-empty batch \[B, ...\], got shape \[0"):
        method.predict(x[:0], 2)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_are_named(name: str, bad: float) -> None:
    method, x, y = _mlp(name)
    x = x.clone()
    x[3, 2] = bad
    message = r"x contains 1 NaN or infinite value\(s\) \(the first in example 3\)"
    with pytest.raises(ValueError, match=message):
        method.predict(x, 2)
    with pytest.raises(ValueError, match=message):
        method.loss(x, y, num_data=10)
    with values_prechecked():  # fit checked the data already: no value check, no sync
        loss, _ = method.loss(x, y, num_data=10)
    assert not torch.isfinite(loss)


@pytest.mark.parametrize("name", NAMES)
def test_labels_are_integer_classes_in_range(name: str) -> None:
    method, x, y = _mlp(name)
    out_of_range = y.clone()
    out_of_range[2] = 5
    with pytest.raises(
        ValueError,
        match=r"y must lie in \[0, 3\) \(the network has 3 outputs\), got values in \[0, 5\]",
    ):
        method.loss(x, out_of_range, num_data=10)
    with pytest.raises(TypeError, match=r"y must hold integer class indices .* got torch.float32"):
        method.loss(x, y.float() + 0.7, num_data=10)
    with pytest.raises(ValueError, match=r"y must have shape \[B=8\], got \[8, 1\]"):
        method.loss(x, y[:, None], num_data=10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("kl_weight", "error", "message"),
    [
        (float("nan"), ValueError, "kl_weight must be a finite number >= 0, got nan"),
        (-1.0, ValueError, "kl_weight must be a finite number >= 0, got -1.0"),
        ("1", TypeError, "kl_weight must be a finite number >= 0, got str '1'"),
        (torch.tensor(float("inf")), ValueError, "kl_weight must be a finite number >= 0, got inf"),
        (torch.ones(2), ValueError, "kl_weight must be a number or a one-element floating"),
    ],
)
def test_kl_weight_is_finite_and_non_negative(name, kl_weight, error, message) -> None:
    method, x, y = _mlp(name)
    with pytest.raises(error, match=message):
        method.loss(x, y, num_data=10, kl_weight=kl_weight)


@pytest.mark.parametrize("num_data", [0, -5, 2.5, True, "100"])
def test_num_data_is_a_positive_int(num_data: object) -> None:
    method, x, y = _mlp("bbh")
    with pytest.raises(ValueError, match="num_data must be a positive int"):
        method.loss(x, y, num_data=num_data, kl_weight=1.0)  # type: ignore[arg-type]


def test_bbb_init_log_var_of_the_wrong_type_is_named() -> None:
    net, _, _ = make_net("mlp")
    with pytest.raises(
        InvalidArgument,
        match=r"BayesByBackprop: init_log_var must be a finite real number, got str 'x'",
    ):
        build("bbb", net, init_log_var="x")


def _typed_options(name: str) -> list[tuple[str, object]]:
    """Every float and int option of a method's constructor."""
    init = METHODS[name].__init__  # type: ignore[misc]
    hints = typing.get_type_hints(inspect.unwrap(init))
    return [
        (opt, hints[opt])
        for opt in inspect.signature(init).parameters
        if hints.get(opt) in (float, int, float | None, int | None)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_every_numeric_option_of_every_method_checks_its_type(name: str) -> None:
    options = _typed_options(name)
    assert options, name
    for option, _ in options:
        net, _, _ = make_net("mlp")
        with pytest.raises(InvalidArgument, match=rf": {option} must be .* got str 'x'"):
            build(name, net, **{option: "x"})
        with pytest.raises(InvalidArgument, match=rf": {option} must be .* got bool True"):
            build(name, net, **{option: True})


def test_the_shape_probe_runs_once_per_shape_and_changes_no_state() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    method = build("mc_dropout", net)
    method.train()
    calls: list[int] = []
    method.net[0].register_forward_pre_hook(lambda m, inp: calls.append(inp[0].shape[0]))
    fresh = copy.deepcopy(method)  # not probed yet: its first call probes
    x = torch.randn(8, 6)
    method.check_input(x)  # the probe: two examples
    assert calls == [2]
    outputs = []
    for module in (method, fresh):
        torch.manual_seed(1)
        outputs.append(module.predict_logits(x, 3))
    assert calls == [2, 8, 8, 8, 2, 8, 8, 8]  # one probe per method and per-example shape
    torch.testing.assert_close(outputs[0], outputs[1])  # the probe drew no random numbers
    for a, b in zip(method.buffers(), fresh.buffers(), strict=True):
        torch.testing.assert_close(a, b)  # nor touched the running statistics
