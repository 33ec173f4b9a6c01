"""``evaluate`` builds a JSON-ready dict with the paper's protocol and the extended suite."""

from __future__ import annotations

import io
import json
import math
import sys

import pytest
import torch
from eval_toys import CLASSES, SIDE, images

from bbh.evaluation import AttackConfig, Progress, evaluate, predict_batched, write_json
from bbh.metrics import accuracy, mutual_information, nll

FAST = AttackConfig(
    num_images=12, epsilons=(0.0, 0.1, 0.3), num_grad_samples=3, attack_samples=2, pgd_steps=2
)


def test_evaluate_stochastic_method(sto, tmp_path) -> None:
    x, y = images(30)
    ood = images(20, seed=1)[0] * 0.2
    res = evaluate(
        sto, x, y, ood_x=ood, num_samples=6, batch_size=7, attacks=FAST, weight_samples=30,
        weight_chunk=8, kernel_size=10, progress=False,
    )  # fmt: skip
    paper, ext = res["paper_protocol"], res["extended"]
    assert res["meta"]["num_samples"] == 6 and res["meta"]["num_classes"] == CLASSES
    for key in ("accuracy", "entropy_cdf_area_in", "entropy_cdf_area_out", "fgsm"):
        assert key in paper
    for key in ("nll", "brier", "ece", "reliability", "ood", "fgsm_eot", "pgd_eot"):
        assert key in ext
    assert set(ext["ood"]) == {"entropy", "mutual_information", "max_probability"}
    for key in ("accuracy", "nll", "ece"):  # bootstrap intervals over the test examples
        low, high = ext["intervals"][key]
        assert 0 <= low <= high
    assert ext["intervals"]["accuracy"][0] <= ext["accuracy"] <= ext["intervals"]["accuracy"][1]
    assert paper["fgsm"]["epsilons"] == [0.0, 0.1, 0.3]
    assert ext["pgd_eot"]["clip"] == [0.0, 1.0] and paper["fgsm"]["clip"] is None
    assert res["weights"]["num_samples"] == 30 and res["weights"]["kernel_size"] == 10
    assert res["weights"]["std_mean"] == pytest.approx(0.5, rel=0.3)
    assert sum(ext["entropy_histogram"]["in"]) == 30
    assert sum(ext["entropy_histogram"]["out"]) == 20
    path = write_json(res, tmp_path / "out" / "result.json")
    assert json.loads(path.read_text())["extended"]["nll"] == pytest.approx(ext["nll"])
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_evaluate_deterministic_method_matches_metrics(det) -> None:
    x, y = images(25)
    res = evaluate(det, x, y, num_samples=50, attacks=None, weight_samples=10, progress=False)
    logits = det.predict_logits(x, 1)
    assert res["meta"]["num_samples"] == 1  # one pass for a deterministic method
    assert res["extended"]["accuracy"] == pytest.approx(accuracy(logits, y))
    assert res["extended"]["nll"] == pytest.approx(nll(logits, y), rel=1e-6)
    assert res["extended"]["mean_mutual_information_in"] == 0.0
    assert "ood" not in res["extended"] and res["extended"]["entropy_histogram"]["out"] is None
    assert res["weights"] is None  # no sample_weights on this method
    json.dumps(res, allow_nan=False)


def test_predict_batched_matches_one_batch(sto) -> None:
    x, _ = images(9)
    sto.gen.manual_seed(3)
    full = sto.predict_logits(x, 4)
    sto.gen.manual_seed(3)
    pred = predict_batched(sto, x, num_samples=4, batch_size=9)
    assert torch.allclose(pred.probs, full.double().softmax(-1).mean(0))
    assert torch.allclose(pred.mutual_information, mutual_information(full), atol=1e-6)


@pytest.mark.parametrize("name", ["bbh", "bbb"])
def test_predict_batched_shares_draws_across_batches(name) -> None:
    """BbH and BbB predict a data set with one set of S draws (generated sample_batch at a
    time): batch by batch equals one batch with the same seed, and progress counts inputs."""
    import bbh

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, CLASSES))
    method = bbh.build(name, net, **({"noise_dim": 3} if name == "bbh" else {}))
    method.sample_batch = 3  # 7 draws: groups of 3, 3, 1
    x, _ = images(10)
    torch.manual_seed(5)
    one = predict_batched(method, x, num_samples=7, batch_size=10)
    stream = io.StringIO()
    progress = Progress(10, "p", stream=stream, min_interval=0.0)
    torch.manual_seed(5)
    many = predict_batched(method, x, num_samples=7, batch_size=4, progress=progress)
    assert torch.allclose(one.probs, many.probs, atol=1e-12) and many.num_samples == 7
    assert torch.allclose(one.expected_entropy, many.expected_entropy, atol=1e-12)
    assert progress.done == 10
    # the same S = 7 draws as predict_logits makes, averaged per input
    torch.manual_seed(5)
    draws = torch.cat([method.draw_predictive(3), method.draw_predictive(3),
                       method.draw_predictive(1)])  # fmt: skip
    with torch.no_grad():
        logits = method.predict_logits_with(draws, x)
    assert torch.allclose(many.probs, logits.double().softmax(-1).mean(0), atol=1e-6)
    assert not torch.allclose(logits[0], logits[1])  # the draws differ


def test_predict_batched_checks_values_once(monkeypatch) -> None:
    """The input values are checked once over the data set, not by the method on every batch
    and group of draws (that cost 3% of LeNet-5's prediction); a bad value names its input."""
    import bbh
    from bbh.validation import values_checked_here

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, CLASSES))
    method = bbh.build("bbh", net, noise_dim=3)
    method.sample_batch = 2  # 6 draws: 3 groups
    checked: list[bool] = []
    real = method.predict_logits_with

    def spy(draws: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        checked.append(values_checked_here())
        return real(draws, x)

    monkeypatch.setattr(method, "predict_logits_with", spy)
    x, _ = images(10)
    predict_batched(method, x, num_samples=6, batch_size=4)
    assert checked == [False] * 9  # 3 groups x 3 batches, none re-checks the values
    x[9, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x contains 1 NaN or infinite value\(s\) \(the first in "
                       r"example 9\)"):  # fmt: skip
        predict_batched(method, x, num_samples=6, batch_size=4)
    assert len(checked) == 9  # refused before any prediction


def test_bad_input(det) -> None:
    x, y = images(10)
    with pytest.raises(
        ValueError,
        match=r"ood_x must be a non-empty floating tensor \[N, ...\], got a torch.float32 "
        r"tensor of shape \[0, 1, 8, 8\]",
    ):
        evaluate(det, x, y, ood_x=x[:0], attacks=None, progress=False)
    with pytest.raises(ValueError, match=r"test_y must lie in \[0, 4\)"):
        evaluate(det, x, y + CLASSES, attacks=None, progress=False)
    with pytest.raises(ValueError, match="test_x must be a non-empty"):
        evaluate(det, x[:0], y[:0], attacks=None, progress=False)

    class NaNMethod(type(det)):
        def predict_logits(self, x, num_samples=100):
            return super().predict_logits(x, num_samples) * math.nan

    with pytest.raises(ValueError, match="predict_logits returned NaN"):
        evaluate(NaNMethod(), x, y, attacks=None, progress=False)


def test_nan_inputs_are_named_not_blamed_on_the_model(det) -> None:
    x, y = images(10)
    bad = x.clone()
    bad[4, 0, 2, 2] = math.nan
    with pytest.raises(ValueError, match=r"test_x contains 1 NaN or infinite value\(s\) \(the fir"):
        evaluate(det, bad, y, attacks=None, progress=False)
    with pytest.raises(ValueError, match=r"ood_x contains 1 NaN .* \(the first in example 4\)"):
        evaluate(det, x, y, ood_x=bad, attacks=None, progress=False)
    with pytest.raises(ValueError, match=r"ood_x must have the per-example shape of test_x"):
        evaluate(det, x, y, ood_x=x[:, :, :4], attacks=None, progress=False)
    with pytest.raises(ValueError, match="evaluate: num_samples must be an int >= 1, got int 0"):
        evaluate(det, x, y, num_samples=0, attacks=None, progress=False)


def test_evaluate_checks_each_input_once(det, monkeypatch) -> None:
    """``evaluate`` checks test_x and ood_x itself; its predictions do not check them again."""
    module = sys.modules["bbh.evaluation.evaluate"]  # the package's name is the function
    seen: list[str] = []
    real = module.check_finite

    def counting(x, name, *args, **kwargs):
        seen.append(name)
        return real(x, name, *args, **kwargs)

    monkeypatch.setattr(module, "check_finite", counting)
    x, y = images(10)
    evaluate(det, x, y, ood_x=x.flip(0), attacks=None, progress=False)
    assert seen == ["test_x", "ood_x"]
    predict_batched(det, x, num_samples=2)  # on its own it still checks
    assert seen[-1] == "x"


def test_write_json_turns_nan_into_null(tmp_path) -> None:
    path = write_json(
        {"a": float("nan"), "b": torch.tensor([1.0, 2.0]), "c": (1, 2)}, tmp_path / "r.json"
    )
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, 2.0], "c": [1, 2]}


def test_progress_line() -> None:
    buf = io.StringIO()
    with Progress(4, "predict", stream=buf, min_interval=0.0) as bar:
        bar.update(2)
        bar.update(2)
    assert "predict: 4/4 (100%)" in buf.getvalue()
    quiet = io.StringIO()
    with Progress(4, "x", stream=quiet, enabled=False) as bar:
        bar.update(4)
    assert quiet.getvalue() == ""


def test_deterministic_mutual_information_is_an_uninformative_ood_score(det) -> None:
    x, y = images(25)
    res = evaluate(det, x, y, ood_x=images(15, seed=4)[0], attacks=None, progress=False)
    assert res["extended"]["ood"]["mutual_information"]["auroc"] == 0.5
