from __future__ import annotations

from pathlib import Path

import pyro
import pytest
import torch

import pyro_vaes as pv

#: the real MNIST test set beside the project, when it is there (see ../shared/data/README.md)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _fresh_rng_and_store():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield


@pytest.fixture(scope="session")
def digits() -> pv.data.Splits:
    return pv.data.load("digits").map(pv.data.binarize)


@pytest.fixture(scope="session")
def grey_digits() -> pv.data.Splits:
    """The digits as grey levels in [0, 1] (for Gaussian likelihoods and image metrics)."""
    return pv.data.load("digits")


@pytest.fixture
def small_vae(digits: pv.data.Splits) -> pv.VAE:
    torch.manual_seed(0)
    return pv.variants.build("vae", digits.shape, latent_dim=4, hidden=(64,))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip("../shared/data (the offline MNIST test set) is not beside the project")
    return SHARED_DATA
