"""``bbh.load``, ``bbh evaluate``, ``bbh reproduce`` and the HTML report, on tiny runs."""

from __future__ import annotations

import json
import re

import pytest
import torch
from tiny_configs import write_tiny

import bbh
from bbh.cli import main
from bbh.data import load_embedded_mnist
from bbh.experiments.config import load_config
from bbh.experiments.report import embedded_images
from bbh.experiments.reproduce import reproduce
from bbh.experiments.runs import RunError
from bbh.experiments.train import train_run
from bbh.io import read_done_marker

#: every demo run shrunk to seconds
TINY_DEMO = [
    "net.options.hidden=[8]",
    "train.epochs=0.2",
    "eval.num_samples=3",
    "eval.attacks.num_images=10",
    "eval.attacks.attack_samples=2",
    "eval.attacks.pgd_steps=2",
]


def test_load_returns_the_trained_method(tmp_path):
    cfg_path = write_tiny(tmp_path, method="map", options="{ prior_scale = 1.0 }", steps=10)
    run = tmp_path / "run"
    train_run(load_config(cfg_path), run, progress=False)
    assert main(["evaluate", str(run), "--quiet", "--attacks", "none"]) == 0
    method = bbh.load(run, device="cpu")
    assert not method.training
    test = load_embedded_mnist().test
    acc = (method.predict(test.images).argmax(-1) == test.labels).double().mean().item()
    recorded = json.loads((run / "evaluation.json").read_text())["extended"]["accuracy"]
    assert acc == pytest.approx(recorded, abs=1e-12)
    saved = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    for key, value in bbh.load(run / "model.pt").state_dict().items():
        assert torch.equal(value, saved[key])


def test_load_rebuilds_a_bbh_with_shared_sigmas_and_many_chunks(tmp_path):
    options = '{ hidden = [8], sigma_per = "unit", num_chunks = 64 }'
    run = tmp_path / "run"
    train_run(load_config(write_tiny(tmp_path, options=options, steps=5)), run, progress=False)
    method = bbh.load(run)
    assert method.posterior.log_sigma_param.numel() == 8 + 8 + 10 + 10  # units of 784-8-10
    assert method.posterior.generator.num_chunks == 64
    saved = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    for key, value in method.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_load_reports_old_or_foreign_files(tmp_path):
    cfg_path = write_tiny(tmp_path, steps=4, checkpoint_every=2)
    run = tmp_path / "run"
    train_run(load_config(cfg_path), run, progress=False)
    data = torch.load(run / "model.pt", weights_only=True)
    with pytest.raises(RunError, match="holds no trained model"):
        bbh.load(tmp_path)
    torch.save({**data, "version": 99}, tmp_path / "v99.pt")
    with pytest.raises(RunError, match="model format version 99; this bbh reads version 1"):
        bbh.load(tmp_path / "v99.pt")
    renamed = {f"old.{k}": v for k, v in data["state_dict"].items()}
    torch.save({**data, "state_dict": renamed}, tmp_path / "layout.pt")
    with pytest.raises(RunError, match="does not match method 'bbh' of this bbh"):
        bbh.load(tmp_path / "layout.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(RunError, match="not a readable bbh model"):
        bbh.load(tmp_path / "junk.pt")
    (run / "train.json").unlink()
    (run / "model.pt").unlink()
    with pytest.raises(RunError, match="continue it with bbh train CONFIG --out RUN --resume"):
        bbh.load(run)


def test_evaluate_writes_json_and_figures(tmp_path, capsys):
    cfg_path = write_tiny(tmp_path, steps=6, checkpoint_every=3)
    run = tmp_path / "run"
    train_run(load_config(cfg_path), run, progress=False)
    assert main(["evaluate", str(run), "--quiet", "--attacks", "eot-pgd", "--ood", "none"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["meta"]["num_ood"] is None and "pgd_eot" in result["extended"]
    assert "fgsm" not in result["paper_protocol"] and "fgsm_eot" not in result["extended"]
    assert (
        result["meta"]["config_hash"]
        == json.loads((run / "config.json").read_text())["config_hash"]
    )
    for path in result["figures"].values():
        assert (run / path).is_file() and (run / path).stat().st_size > 1000
    listed = read_done_marker(run)  # bbh.io's marker of a finished run lists every file
    assert listed is not None and {"model.pt", "train.json", "evaluation.json"} <= set(listed)
    assert set(result["figures"].values()) <= set(listed)
    assert main(["evaluate", str(run), "--attacks", "fgsm-ish"]) == 2
    err = capsys.readouterr().err
    assert "unknown attack(s) ['fgsm-ish']" in err and err.count("\n") == 1


def test_reproduce_reports_every_method_and_reuses_runs(tmp_path):
    out = tmp_path / "demo"
    first = reproduce("demo", scale="cpu", out=out, overrides=TINY_DEMO, only=["map", "bbh"],
                      progress=False, log=lambda s: None)  # fmt: skip
    assert [r.name for r in first.rows] == ["map", "bbh"]
    page = (out / "report.html").read_text()
    images = embedded_images(page)
    assert len(images) >= 5 and all(src.startswith("data:image/png;base64,") for src in images)
    table = page.split("<table>")[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>([^<]*)</td>", table)
    assert rows == ["MAP", "BbH (recommended)"]
    md = (out / "report.md").read_text()
    assert "| MAP |" in md and "| BbH (recommended) |" in md
    for link in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (out / link).is_file(), link

    trained = (out / "map" / "train.json").stat().st_mtime_ns
    said: list[str] = []
    reproduce("demo", scale="cpu", out=out, overrides=TINY_DEMO, only=["map", "bbh"],
              progress=False, log=said.append)  # fmt: skip
    assert (out / "map" / "train.json").stat().st_mtime_ns == trained
    assert sum("already evaluated" in s for s in said) == 2

    # --report-only trains nothing: a run whose config changed is listed as missing
    done = reproduce("demo", scale="cpu", out=out, overrides=TINY_DEMO, only=["map", "bbh"],
                     report_only=True, progress=False)  # fmt: skip
    assert [r.name for r in done.rows] == ["map", "bbh"] and done.missing == []
    changed = [*TINY_DEMO, "method.options.noise_dim=3"]
    stale = reproduce("demo", scale="cpu", out=out, overrides=changed, only=["bbh"],
                      report_only=True, progress=False)  # fmt: skip
    assert stale.rows == [] and stale.missing == ["demo/bbh"]
    assert "Not trained and evaluated yet" in (out / "report.md").read_text()

    said.clear()
    reproduce("demo", scale="cpu", out=out, overrides=[*TINY_DEMO, "method.options.noise_dim=3"],
              only=["bbh"], progress=False, log=said.append)  # fmt: skip
    kept = [p for p in out.iterdir() if p.name.startswith("bbh.superseded-")]
    assert len(kept) == 1 and (kept[0] / "model.pt").is_file()
    assert any("the config changed" in s for s in said)
    assert (out / "map" / "train.json").stat().st_mtime_ns == trained


def test_demo_trains_five_methods_and_prints_the_table(tmp_path):
    from bbh.experiments.demo import demo_table, run_demo

    result = run_demo(tmp_path / "demo", overrides=TINY_DEMO, progress=False, log=lambda s: None)
    table = demo_table(result.rows).splitlines()
    assert table[0].split()[:5] == ["method", "accuracy", "NLL", "ECE", "OOD"]
    labels = ["MAP", "MC dropout", "Deep ensemble", "Bayes by Backprop", "BbH (recommended)"]
    assert [line[: len(label)] for line, label in zip(table[2:], labels, strict=True)] == labels
    for line in table[2:]:
        *numbers, temperature = line.split()[-8:]
        assert all(re.fullmatch(r"\d+(\.\d+)?", n) for n in numbers), line
        # the KL's temperature, chosen on the validation split by the methods with a KL
        tempered = line.startswith(("Bayes by Backprop", "BbH"))
        assert re.fullmatch(r"[\d.e-]+", temperature) if tempered else temperature == "–", line
    assert result.report_html is not None and result.report_html.is_file()


def test_load_reads_a_bbh_model_saved_before_the_linear_noise_path(tmp_path):
    """A recommended BbH written without ``noise_mixing`` (its default before 2026-11-27) loads:
    the layout is read from the saved state; its predictions are the saved model's."""
    cfg_path = write_tiny(tmp_path, steps=3)
    run = tmp_path / "run"
    train_run(load_config(cfg_path), run, progress=False)
    data = torch.load(run / "model.pt", weights_only=True)
    assert "posterior.generator.noise_mixing" in data["state_dict"]  # today's default
    old = {k: v for k, v in data["state_dict"].items() if not k.endswith("noise_mixing")}
    torch.save({**data, "state_dict": old}, tmp_path / "old.pt")
    method = bbh.load(tmp_path / "old.pt")
    assert method.posterior.generator.noise_mixing is None
    loaded = method.state_dict()
    assert loaded.keys() == old.keys()
    assert all(torch.equal(loaded[k], old[k]) for k in old)
    assert torch.isfinite(method.predict_logits(load_embedded_mnist().test.images[:5], 3)).all()
    # a state that matches neither layout is still an error that names the keys
    del old["posterior.generator.offset"]
    torch.save({**data, "state_dict": old}, tmp_path / "broken.pt")
    with pytest.raises(RunError, match="missing"):
        bbh.load(tmp_path / "broken.pt")
