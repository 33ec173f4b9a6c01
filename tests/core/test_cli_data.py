from bbh.cli import main


def test_data_embedded_needs_no_root(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("BBH_DATA", str(tmp_path))
    assert main(["data", "embedded"]) == 0
    out = capsys.readouterr().out
    assert "train: 2000 images [1, 28, 28]" in out and "ood (notMNIST): 1000 images" in out


def test_data_missing_offline_names_the_file(capsys, tmp_path):
    assert main(["data", "mnist", "--data-dir", str(tmp_path), "--offline"]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz is missing" in err and str(tmp_path) in err
