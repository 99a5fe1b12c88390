from __future__ import annotations

import json

import pytest
import torch

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


def test_every_option_of_every_command_has_a_description_and_its_default():
    sub = next(a for a in cli.parser()._actions if a.dest == "command")
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
            if action.option_strings:  # positionals (RUN) have no default
                assert "default" in action.help, f"{name} {action.option_strings}: no default"


def test_train_validates_on_a_split_of_the_training_data_never_the_test_set(tmp_path, monkeypatch):
    from pyro_vaes.catalogue import variants

    seen = {}

    def fit(self, model, data, **kwargs):
        seen["train"], seen["val"] = data[0], kwargs["val_data"]
        seen["capture"] = kwargs["capture"]
        raise ValueError("stop here")

    monkeypatch.setattr(variants.Variant, "fit", fit)
    args = ["train", "--hidden", "8", "--latent-dim", "2", "--out", str(tmp_path / "r"), "--quiet"]
    assert cli.main(args) == 2
    from pyro_vaes import data

    whole = data.load("digits")
    train, val = seen["train"], seen["val"][0]
    assert (len(train), len(val)) == (1437 - 144, 144)  # --val-fraction 0.1 by default
    rows = {bytes(x.numpy()) for x in data.binarize(whole.x_test, 1)}
    assert not rows & {bytes(x.numpy()) for x in val}  # never a test image
    # the validation images are binarised once, like the test images
    assert set(val.unique().tolist()) == {0.0, 1.0}

    assert seen["capture"] is True  # long fits replay their captured step by default

    seen.clear()
    assert cli.main([*args, "--val-fraction", "0", "--eager"]) == 2
    assert seen["val"] is None and len(seen["train"]) == 1437
    assert seen["capture"] is False


@pytest.mark.slow
def test_train_writes_the_csv_history_and_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    args = ["train", "--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--eval-samples",
            "2", "--out", str(run), "--quiet", "--csv", "--tensorboard"]  # fmt: skip
    assert cli.main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    lines = (run / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,step,loss,val_loss,seconds" and len(lines) == 3
    assert float(lines[2].split(",")[3]) == metrics["history"]["val_loss"][1]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # --overwrite removes both with the rest of the run's files
    assert cli.main([*args[:-2], "--overwrite"]) == 0
    assert not (run / "history.csv").exists() and not (run / "tensorboard").exists()


@pytest.mark.slow
def test_conditional_runs_sample_by_label_and_m2_reports_its_accuracy(tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "m2"
    args = ["train", "--variant", "m2", "--epochs", "1", "--hidden", "16", "--latent-dim", "2"]
    assert cli.main([*args, "--eval-samples", "2", "--out", str(run), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["num_classes"] == 10  # from the digits' labels
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--num-samples", "2", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == metrics["test"]["accuracy"]

    assert cli.main(["sample", str(run), "-n", "9", "--label", "3"]) == 0
    assert cli.main(["sample", str(run), "-n", "20"]) == 0  # one row of two per label
    by_label = Image.open(run / "samples-2.png")
    assert by_label.height > by_label.width  # ten rows of two
    capsys.readouterr()
    assert cli.main(["sample", str(run), "--label", "10"]) == 2
    err = capsys.readouterr().err
    assert "--label 10" in err and "the labels 0..9" in err and err.count("\n") == 1

    vae = tmp_path / "vae"
    args = ["train", "--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--eval-samples"]
    assert cli.main([*args, "2", "--out", str(vae), "--quiet"]) == 0
    assert "accuracy" not in json.loads((vae / "metrics.json").read_text())["test"]
    capsys.readouterr()
    assert cli.main(["sample", str(vae), "--label", "3"]) == 2
    assert "takes no labels" in capsys.readouterr().err


def test_run_pictures_reconstruct_a_conditional_model_with_the_images_labels(tmp_path):
    import torch

    import pyro_vaes as pv

    splits = pv.data.load("digits")
    model = pv.variants.build("cvae", splits.shape, latent_dim=2, hidden=(8,))
    seen = []
    original = model.reconstruct
    model.reconstruct = lambda x, y=None: seen.append(y) or original(x, y)
    cli._pictures(model, splits, tmp_path)
    assert torch.equal(seen[0], splits.y_test[:32])
    assert (tmp_path / "reconstructions.png").stat().st_size > 1000


def test_a_variant_keeps_its_own_networks_unless_net_is_given(tmp_path):
    """skip_vae's decoder is the skip MLP: train must not replace it with the plain MLP."""
    from pyro_vaes import nets
    from pyro_vaes.app import runs

    args = ["train", "--variant", "skip_vae", "--epochs", "1", "--hidden", "16", "--latent-dim",
            "2", "--eval-samples", "2", "--val-fraction", "0", "--quiet"]  # fmt: skip
    assert cli.main([*args, "--out", str(tmp_path / "skip")]) == 0
    _, model = runs.load_run(tmp_path / "skip")
    assert isinstance(model.decoder, nets.SkipMLPDecoder)
    assert cli.main([*args, "--net", "mlp", "--out", str(tmp_path / "plain")]) == 0
    config, model = runs.load_run(tmp_path / "plain")
    assert config["options"]["net"] == "mlp" and not isinstance(model.decoder, nets.SkipMLPDecoder)


def test_dequantize_presents_each_grey_level_as_an_interval_fresh_every_batch(
    tmp_path, monkeypatch
):
    from pyro_vaes import data
    from pyro_vaes.app import runs
    from pyro_vaes.catalogue import variants

    seen = {}

    def fit(self, model, data, **kwargs):
        seen["transform"], seen["val"] = kwargs["transform"], kwargs["val_data"][0]
        raise ValueError("stop here")

    monkeypatch.setattr(variants.Variant, "fit", fit)
    out = str(tmp_path / "r")
    args = ["train", "--variant", "fvae", "--binarize", "dequantize", "--out", out, "--quiet"]
    assert cli.main(args) == 2
    x = data.load("digits").x_train[:50]
    a, b = seen["transform"](x), seen["transform"](x)
    assert not torch.equal(a, b)  # a fresh draw every batch
    assert torch.equal(torch.floor(a * 17), torch.round(x * 16))  # inside its grey level
    val = seen["val"]
    assert bool(((val >= 0) & (val < 1)).all()) and not torch.equal(val, torch.round(val * 16) / 16)
    # the held-out images are dequantised once, the same in every run
    config = {"data": "digits", "binarize": "dequantize", "val_fraction": 0.1}
    first, second = runs.prepare_data(config)[0], runs.prepare_data(config)[0]
    assert torch.equal(first.x_test, second.x_test) and torch.equal(first.x_val, second.x_val)


def test_dequantizing_data_without_grey_levels_is_refused_in_one_line(tmp_path, capsys):
    args = ["train", "--data", "tree", "--binarize", "dequantize", "--quiet"]
    assert cli.main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pyro-vaes: error: tree is not made of grey levels, so there is nothing to "
                   "dequantise: use --binarize none"]  # fmt: skip
