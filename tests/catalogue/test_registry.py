"""One registry type: unknown names list the choices, names are taken once, and a new part
registered in its own file is available to the catalogue, the CLI and build at once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pyro_vaes as pv
from pyro_vaes.parts import PartContext, priors
from pyro_vaes.registry import Registry, UnknownName


def test_unknown_names_list_the_choices_and_names_are_taken_once():
    reg: Registry[int] = Registry("thing")
    reg.register("one", 1)

    @reg.register("two")
    def two() -> int:
        return 2

    assert list(reg) == ["one", "two"] and reg["one"] == 1 and reg["two"] is two
    assert "three" not in reg and reg.get("three") is None
    with pytest.raises(ValueError, match=r"unknown thing 'three'; choose from \['one', 'two'\]"):
        reg["three"]
    with pytest.raises(KeyError):
        reg["three"]
    with pytest.raises(ValueError, match="already registered"):
        reg.register("one", 3)
    assert issubclass(UnknownName, KeyError) and issubclass(UnknownName, ValueError)


@pytest.mark.parametrize(
    ("registry", "kind"),
    [
        (pv.variants.registry, "variant"),
        (pv.variants.priors, "prior"),
        (pv.variants.posteriors, "posterior"),
        (pv.variants.networks, "net"),
        (pv.likelihoods.registry, "likelihood"),
        (pv.data.registry, "dataset"),
    ],
)
def test_every_registry_is_the_one_type(registry, kind):
    assert isinstance(registry, Registry) and registry.kind == kind and len(registry) > 0


class ShiftedNormal(nn.Module):
    """A prior written by a user: N(1, I)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.ones(latent_dim))

    def forward(self):
        import pyro.distributions as dist

        return dist.Normal(self.loc, 1.0).to_event(1)


def test_a_new_prior_in_one_place_reaches_build(digits):
    @priors.register("shifted_normal_for_test")
    def _build(ctx: PartContext) -> ShiftedNormal:
        return ShiftedNormal(ctx.latent_dim)

    try:
        vae = pv.variants.build(
            "vae", digits.shape, latent_dim=3, hidden=(8,), prior="shifted_normal_for_test"
        )
        assert isinstance(vae.prior, ShiftedNormal)
        assert torch.equal(vae.prior().mean, torch.ones(3))
    finally:
        priors.unregister("shifted_normal_for_test")
