from __future__ import annotations

import json

import pytest

from pyro_vaes.app import cli


@pytest.mark.slow
def test_train_evaluate_sample_list(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--epochs",
                "2",
                "--hidden",
                "32",
                "--latent-dim",
                "2",
                "--eval-samples",
                "20",
                "--out",
                str(run),
                "--quiet",
            ]
        )
        == 0
    )
    for name in (
        "checkpoint.pt",
        "config.json",
        "metrics.json",
        "loss.png",
        "samples.png",
        "reconstructions.png",
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]["loss"]) == 2 and metrics["test"]["log_likelihood"] < 0
    capsys.readouterr()

    assert cli.main(["evaluate", str(run), "--num-samples", "20", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["log_likelihood"] >= result["elbo"] - 1e-6

    assert cli.main(["sample", str(run), "-n", "9", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 1000

    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "vae" in listing and "beta_vae" in listing


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert cli.main(["train", "--variant", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown variant" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert cli.main(["evaluate", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert cli.main(["train", "--epochs", "-1"]) == 2  # a usage error: one line, not usage
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs: must be >= 0" in err
    with pytest.raises(SystemExit) as help_exit:  # --help still prints and exits 0
        cli.main(["train", "--help"])
    assert help_exit.value.code == 0
