"""Every figure function writes a non-empty PNG."""

from __future__ import annotations

import pytest
import torch
from eval_toys import images

from bbh.evaluation import (
    AttackConfig,
    evaluate,
    figures,
    mixup_study,
    rotation_study,
    weight_statistics,
)
from bbh.metrics import reliability_bins

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG)


def test_each_figure_writes_a_png(sto, tmp_path) -> None:
    x, y = images(40)
    ood = images(30, seed=2)[0] * 0.3
    res = evaluate(
        sto, x, y, ood_x=ood, num_samples=5,
        attacks=AttackConfig(num_images=10, epsilons=(0.0, 0.2), num_grad_samples=2,
                             attack_samples=2, pgd_steps=2),
        progress=False,
    )  # fmt: skip
    written = figures.write_figures(res, tmp_path / "figs", prefix="toy_")
    assert set(written) == {"reliability", "entropy_histograms", "robustness"}
    paths = [tmp_path / "figs" / f"toy_{n}.png" for n in ("reliability", "entropy_histograms")]
    paths.append(
        figures.reliability_diagram(
            reliability_bins(sto.predict_logits(x, 4), y, num_bins=10), tmp_path / "rel.png"
        )
    )
    paths.append(figures.study_strip(rotation_study(sto, x[0], [0, 45, 90], num_samples=4),
                                     tmp_path / "rot.png"))  # fmt: skip
    paths.append(figures.study_strip(mixup_study(sto, x[0], x[1], num_samples=4),
                                     tmp_path / "mix.png"))  # fmt: skip
    paths.append(figures.class_spread_plot(sto.predict_logits(x[:3], 6).softmax(-1),
                                           tmp_path / "spread.png"))  # fmt: skip
    stats = weight_statistics(sto.sample_weights(20).detach(), kernel_size=16)
    paths.append(figures.weight_correlation_map(stats, tmp_path / "corr.png"))
    paths.append(figures.weight_histograms(stats, tmp_path / "hist.png"))
    paths.append(figures.robustness_plot({"pgd": res["extended"]["pgd_eot"]}, tmp_path / "r.png"))
    for p in paths:
        assert _is_png(p), p


def test_bad_figure_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="curves must not be empty"):
        figures.robustness_plot({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"sample_probs must be \[S, B, C\]"):
        figures.class_spread_plot(torch.rand(3, 4), tmp_path / "x.png")


def test_missing_matplotlib_says_what_to_install(monkeypatch, tmp_path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'bayes-by-hypernet\[plot\]'"):
        figures.robustness_plot({"x": {}}, tmp_path / "x.png")


def test_a_figure_that_fails_mid_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    """Figures go through bbh.io.savefig: a failure (or a kill) mid-write never leaves a
    partial PNG under the final name, and an earlier complete figure stays."""
    matplotlib = pytest.importorskip("matplotlib")
    bins = reliability_bins(torch.full((4, 2), 0.5), torch.tensor([0, 1, 0, 1]), num_bins=5)
    path = tmp_path / "reliability.png"
    figures.reliability_diagram(bins, path)
    complete = path.read_bytes()

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        figures.reliability_diagram(bins, path)
    with pytest.raises(OSError, match="disk full"):
        figures.reliability_diagram(bins, tmp_path / "new.png")
    assert path.read_bytes() == complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reliability.png"]
