"""``pyro-vaes report``: the HTML page, its pictures, and a real browser that renders them."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
import torch

from pyro_vaes.analysis import plots
from pyro_vaes.app import cli
from pyro_vaes.app import report as report_module


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "vae"
    args = ["train", "--epochs", "2", "--hidden", "32", "--latent-dim", "3"]
    assert cli.main([*args, "--eval-samples", "10", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def report(run: Path) -> Path:
    assert cli.main(["report", str(run), "--num-samples", "10", "--num-points", "60"]) == 0
    return run / "report" / "index.html"


@pytest.mark.slow
def test_report_links_every_picture_it_writes(report: Path):
    page = report.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    expected = {
        "loss.png",
        "samples.png",
        "reconstructions.png",
        "traversals.png",
        "interpolations.png",
        "ppc.png",
        "pvalues.png",
        "calibration.png",
        "latent.png",
    }
    assert set(sources) == expected
    for src in sources:
        assert (report.parent / src).stat().st_size > 2000, src
    assert (report.parent / "predictive.nc").is_file()
    assert "az.summary" in page and "<table" in page
    assert (report.parent / "pvalues.csv").is_file()


def _settings(page: str) -> dict[str, str]:
    table = re.search(r'<table class="settings" id="settings">(.*?)</table>', page, re.S)
    assert table is not None, "no settings table"
    return dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table.group(1)))


def test_report_shows_the_run_settings_and_statistics_that_differ(report: Path):
    settings = _settings(report.read_text())
    assert settings["variant"].startswith("vae: standard normal prior")
    assert settings["latent dim"] == "3"
    assert settings["epochs"] == "2"
    assert settings["objective"].startswith("ELBO")
    assert settings["data"] == "digits (1x8x8), binarisation dynamic"
    assert settings["seed"] == "0"
    assert "hidden=[32]" in settings["model options"]
    # the p-values behind the histograms: binary digits get the binary statistics, and no two
    # histograms (the 20 bins pvalues.png draws) are the same
    pvalues = pd.read_csv(report.parent / "pvalues.csv", index_col="datapoint")
    assert list(pvalues.columns) == [
        "on_fraction",
        "neighbour_on",
        "row_centre",
        "euler_number",
        "predicted_class",
    ]
    assert len(pvalues) == 60 and pvalues.to_numpy().min() >= 0 and pvalues.to_numpy().max() <= 1
    counts = {c: np.histogram(pvalues[c], bins=20, range=(0, 1))[0] for c in pvalues.columns}
    for a, b in itertools.combinations(pvalues.columns, 2):
        assert not np.array_equal(counts[a], counts[b]), (a, b)


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="needs headless Chromium (Debian: chromium)")
def test_headless_chromium_renders_every_image(report: Path, tmp_path: Path):
    """A real browser loads the page: every image decodes (naturalWidth > 0), the settings are
    on it, and a screenshot as tall as the page (measured by a first pass) shows all of it,
    centred. ``--no-sandbox``: Chromium refuses to run as root without it."""
    browser = _chromium()
    assert browser is not None
    width = 1280
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    flags += ["--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}"]
    url = report.resolve().as_uri()
    dom = subprocess.run(
        [*flags, f"--window-size={width},800", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None
    data = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert "images-loaded" in data, "the page's load script did not run"
    images = len(re.findall(r"<img ", report.read_text()))
    assert images == 9
    assert data["images-loaded"] == f"{images}/{images}", data.get("images-broken")
    assert data["images-broken"] == ""
    settings = _settings(dom)
    assert settings["latent dim"] == "3" and settings["epochs"] == "2"
    assert settings["variant"].startswith("vae") and settings["objective"].startswith("ELBO")

    height = int(data["page-height"])
    assert height > 3000  # the old screenshot's 3,000 px cut the page
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--window-size={width},{height}", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (height, width)  # the whole page, to its last pixel
    assert pixels.std() > 20  # pictures, not a blank page
    ink = np.flatnonzero((pixels < 200).any(0))  # columns with content
    left, right = ink[0], width - 1 - ink[-1]
    assert abs(left - right) < 0.05 * width and ink[-1] - ink[0] > 0.75 * width  # centred, full
    rows = np.flatnonzero((pixels < 200).any(1))
    assert rows[-1] > height - 200  # the last content (the summary table) is in the picture


def test_labelled_image_grid(tmp_path: Path):
    images = torch.rand(6, 1, 8, 8)
    path = plots.save_image_grid(
        images,
        tmp_path / "a.png",
        ncol=3,
        row_labels=["z[0]", "z[1]"],
        col_labels=["-1", "0", "+1"],
        xlabel="step",
        ylabel="latent dimension",
    )
    assert path.stat().st_size > 2000
    with pytest.raises(ValueError, match="2 x labels for 3"):
        plots.save_image_grid(images, tmp_path / "b.png", ncol=3, col_labels=["a", "b"])


def test_latent_summary_one_row_per_site():
    rng = np.random.default_rng(0)
    centres = np.zeros((50, 4))
    centres[:, :2] = rng.normal(0, 1, (50, 2))  # two active dims, two collapsed
    z = centres + 0.1 * rng.normal(size=(1, 200, 50, 4))
    c = rng.normal(size=(1, 200, 50))  # a scalar site
    idata = az.from_dict(
        posterior={"z": z, "c": c},
        dims={"z": ["datapoint", "z_dim"], "c": ["datapoint"]},
    )
    table = report_module.latent_summary(idata)
    assert list(table.index) == ["latent 'z'", "latent 'c'"]
    assert table.loc["latent 'z'", "dims"] == 4 and table.loc["latent 'c'", "dims"] == 1
    assert table.loc["latent 'z'", "active dims"] == 2
    assert table.loc["latent 'c'", "active dims"] == 0
    assert table.loc["latent 'z'", "datapoints"] == 50 and table.loc["latent 'z'", "draws"] == 200
    assert table.loc["latent 'z'", "mean sd"] == pytest.approx(0.1, rel=0.05)
    assert table.loc["latent 'c'", "mean sd"] == pytest.approx(1.0, rel=0.05)
    assert 120 < table.loc["latent 'z'", "mean ess_bulk"] < 300  # independent draws: about 200


def test_latent_scatter_projects_wide_codes(tmp_path: Path):
    codes = torch.randn(100, 5)
    labels = torch.randint(0, 3, (100,))
    assert plots.latent_scatter(codes, labels, tmp_path / "a.png").stat().st_size > 2000
    assert plots.latent_scatter(codes[:, :1], None, tmp_path / "b.png").is_file()
    with pytest.raises(ValueError):
        plots.latent_scatter(torch.randn(10), None, tmp_path / "c.png")


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path: Path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "latents"), [("categorical_vae", ["c"]), ("joint_vae", ["z", "c"])]
)
def test_report_for_models_with_other_and_several_latent_sites(
    tmp_path: Path, variant: str, latents: list[str]
):
    """The categorical VAE's only latent is "c", with no prior module; JointVAE has two latent
    sites, "z" and "c": each gets its own posterior variable, summary and evaluation."""
    run = tmp_path / variant
    args = ["train", "--variant", variant, "--epochs", "1", "--hidden", "32"]
    assert (
        cli.main([*args, "--latent-dim", "2", "--eval-samples", "5", "--out", str(run), "--quiet"])
        == 0
    )
    argv = ["report", str(run), "--num-samples", "5", "--num-points", "20"]
    assert cli.main([*argv, "--classifier-epochs", "0"]) == 0
    page = (run / "report" / "index.html").read_text()
    for site in latents:
        assert f"latent &#x27;{site}&#x27;" in page or f"latent '{site}'" in page
    idata = az.from_netcdf(str(run / "report" / "predictive.nc"))
    assert sorted(idata["posterior"].data_vars) == sorted(latents)
    assert idata["posterior"][latents[0]].dims[:3] == ("chain", "draw", "datapoint")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["cvae", "m2"])
def test_report_of_a_conditional_run_shows_samples_of_each_label(tmp_path: Path, variant: str):
    from PIL import Image

    run = tmp_path / variant
    args = ["train", "--variant", variant, "--epochs", "1", "--hidden", "32", "--latent-dim"]
    assert cli.main([*args, "2", "--eval-samples", "5", "--out", str(run), "--quiet"]) == 0
    argv = ["report", str(run), "--num-samples", "5", "--num-points", "20"]
    assert cli.main([*argv, "--classifier-epochs", "0", "--quiet"]) == 0
    page = (run / "report" / "index.html").read_text()
    assert "samples_by_label.png" in page and "samples.png" not in page
    grid = Image.open(run / "report" / "samples_by_label.png")
    assert grid.height > grid.width * 0.8  # ten rows of ten: about square, with its labels
