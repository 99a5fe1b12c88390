"""The package itself: lazy public names, what importing it costs, and pictures that leave the
caller's matplotlib alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pyro_vaes as pv


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return done.stdout.strip()


def test_import_loads_no_analysis_dependencies():
    heavy = ("arviz", "matplotlib", "sklearn", "geoopt", "pandas", "xarray")
    loaded = _run(
        f"import sys, pyro_vaes; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    assert loaded == ""


def test_public_names_resolve_where_users_find_them():
    for name in pv.__all__:
        assert getattr(pv, name) is not None, name
    assert callable(pv.fit) and callable(pv.posterior_predictive)
    assert pv.VAE.__module__ == "pyro_vaes.models.vae"
    assert callable(pv.evaluate.log_likelihood) and callable(pv.variants.build)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = pv.nope


def test_pictures_leave_the_callers_backend_alone(tmp_path):
    out = tmp_path / "grid.png"
    backend = _run(
        "import matplotlib; matplotlib.use('svg'); import torch; "
        "from pyro_vaes.analysis import plots; "
        f"plots.save_image_grid(torch.rand(4, 1, 8, 8), {str(out)!r}); "
        "import matplotlib.pyplot as plt; print(matplotlib.get_backend(), len(plt.get_fignums()))"
    )
    assert backend == "svg 0" and out.stat().st_size > 0


def test_python_dash_m_runs_the_cli():
    listing = _run(
        "import runpy, sys; sys.argv = ['pyro_vaes', 'list']; "
        "runpy.run_module('pyro_vaes', run_name='__main__')"
    )
    assert "beta_vae" in listing


def test_packaging_metadata_license_and_sdist_contents():
    """The sdist carries the license, the examples, the benchmarks and the docs; the metadata
    names the authors and the project's addresses."""
    import configparser

    root = Path(__file__).resolve().parents[1]
    assert "MIT License" in (root / "LICENSE").read_text()
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    meta = cfg["metadata"]
    assert meta["license"] == "MIT" and meta["license_files"] == "LICENSE"
    assert meta["author"] and meta["url"].startswith("https://")
    assert {"Source", "Issues", "Documentation"} <= {
        line.split("=")[0].strip() for line in meta["project_urls"].strip().splitlines()
    }
    manifest = (root / "MANIFEST.in").read_text().split("\n")
    for folder in ("examples", "bench", "docs"):
        assert f"graft {folder}" in manifest
