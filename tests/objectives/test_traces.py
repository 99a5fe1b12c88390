"""The traces every objective starts from are Pyro's own (trace, replay, pruned subsample sites),
taken with one handler per program."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from pyro_vaes.objectives.traces import traces

X = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))


def _pyro_traces(model, guide, *args):
    guide_tr = poutine.trace(guide).get_trace(*args)
    model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args)
    return prune_subsample_sites(model_tr), prune_subsample_sites(guide_tr)


def _pair(seen):
    """A subsampled plate, a param site, a hidden auxiliary draw and an observed site."""

    def model(x):
        scale = pyro.param("scale", torch.ones(()), constraint=dist.constraints.positive)
        with pyro.plate("data", len(x), subsample_size=5) as idx:
            seen.append(idx)
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, scale).to_event(1), obs=x[idx])

    def guide(x):
        loc = pyro.param("loc", torch.zeros(2))
        with poutine.block(hide=["noise"]):
            pyro.sample("noise", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x), subsample_size=5) as idx:
            seen.append(idx)
            pyro.sample("z", dist.Normal(loc + x[idx], 1.0).to_event(1))

    return model, guide


def test_the_traces_are_pyros_trace_replay_and_prune():
    pyro.clear_param_store()
    seen: list[torch.Tensor] = []
    model, guide = _pair(seen)
    torch.manual_seed(0)
    ours = traces(model, guide, (X,), {})
    torch.manual_seed(0)
    pyros = _pyro_traces(model, guide, X)
    for a, b in zip(ours, pyros, strict=True):
        names = [n for n in b.nodes if n not in ("_INPUT", "_RETURN")]
        assert list(a.nodes) == names  # params and samples; no subsample site, no hidden draw
        for name in names:
            for key in ("type", "is_observed", "scale", "cond_indep_stack"):
                assert a.nodes[name][key] == b.nodes[name][key], (name, key)
            assert torch.equal(a.nodes[name]["value"], b.nodes[name]["value"])
    # the model replays the guide's subsample: both score the same five datapoints
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[2], seen[3])
    assert ours[0].nodes["x"]["scale"] == 20 / 5


def test_a_site_latent_in_the_model_but_observed_in_the_guide_is_refused():
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        pyro.sample("z", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    with pytest.raises(RuntimeError, match="site z must be sampled in trace"):
        traces(model, guide, (), {})
