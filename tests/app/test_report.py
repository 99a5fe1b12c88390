"""``pyro-vaes report``: the HTML page, its pictures, and a real browser that renders them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import torch

from pyro_vaes.analysis import plots
from pyro_vaes.app import cli


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


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="needs headless Chromium (Debian: chromium)")
def test_headless_chromium_renders_every_image(report: Path, tmp_path: Path):
    browser = _chromium()
    assert browser is not None
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    url = report.resolve().as_uri()
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded is not None, "the page's load script did not run"
    assert loaded.group(1) == loaded.group(2) == "9"
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, "--hide-scrollbars", "--window-size=1200,3000", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 20  # pictures, not a blank page


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
