"""The documentation: the API reference builds from the docstrings with warnings as errors, it
covers every module, and the tutorial's script runs and checks what the tutorial says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIAL = DOCS / "tutorial" / "custom_parts.py"


def _env() -> dict[str, str]:
    # one thread: the tutorial's networks are tiny, and on a shared two-core machine a second
    # thread that waits for a busy core makes a five-second script take thirty
    return {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _modules() -> list[str]:
    """Every module of the package, by dotted name (packages included)."""
    names = []
    for path in sorted((ROOT / "pyro_vaes").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] != "__main__":
            names.append(".".join(parts))
    return names


def test_every_module_is_in_the_api_reference() -> None:
    documented = set()
    for page in (DOCS / "api").glob("*.rst"):
        documented |= set(re.findall(r"^\.\. automodule:: (\S+)$", page.read_text(), re.M))
    modules = _modules()
    assert len(modules) > 60  # the walk found the package
    assert sorted(set(modules) - documented) == []
    assert sorted(documented - set(modules)) == []  # no page names a module that is gone


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(out),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stderr == ""  # -q leaves only warnings and errors, and there are none

    api = {page.stem: page.read_text() for page in (out / "api").glob("*.html")}
    assert set(api) >= {"training", "models", "parts", "objectives", "distributions", "data"}
    # the key names are documented, each with its anchor in the module that defines it
    for page, anchors in {
        "training": [
            "pyro_vaes.train.fit.fit",
            "pyro_vaes.train.step.Step",
            "pyro_vaes.train.callbacks.KLAnnealing",
        ],
        "models": ["pyro_vaes.models.vae.VAE", "pyro_vaes.catalogue.variants.build"],
        "parts": [
            "pyro_vaes.priors.vamp.VampPrior",
            "pyro_vaes.guides.von_mises_fisher.VonMisesFisher",
        ],
        "distributions": ["pyro_vaes.distributions.von_mises_fisher.VonMisesFisher"],
        "objectives": [
            "pyro_vaes.objectives.elbo.ELBO",
            "pyro_vaes.objectives.terms.negative_elbo",
        ],
    }.items():
        for anchor in anchors:
            assert f'id="{anchor}"' in api[page], (page, anchor)
    # docstring math goes to MathJax rather than staying as reST
    assert r"\mathrm{KL}" in api["objectives"] and ".. math::" not in api["objectives"]

    tutorial = (out / "tutorial.html").read_text()
    for included in ("LearnedLaplace", "FullRankNormal", "FreeBitsELBO", "check_objective"):
        assert included in tutorial, included  # the literalincludes found their markers


@pytest.mark.slow
def test_tutorial_script_runs_and_checks_its_claims() -> None:
    # its own process: the script registers parts by name, which must not leak into other tests
    done = subprocess.run(
        [sys.executable, str(TUTORIAL)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = dict(
        (key, float(value)) for key, value in re.findall(r"^(\w+): (-?[\d.]+)$", done.stdout, re.M)
    )
    assert set(results) == {
        "first_loss",
        "last_loss",
        "test_log_likelihood_before",
        "test_log_likelihood_after",
        "prior_scale_min",
        "prior_scale_max",
    }
    # the numbers the tutorial quotes, with room for another torch version's arithmetic
    assert results["last_loss"] < results["first_loss"] - 5
    assert 20 < results["last_loss"] < 32
    assert results["test_log_likelihood_after"] > results["test_log_likelihood_before"] + 5
    assert -32 < results["test_log_likelihood_after"] < -20
    assert results["prior_scale_max"] > 1.0
