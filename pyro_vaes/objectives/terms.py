r"""The terms of one draw of a model/guide pair, with one rule for scales and masks.

Every objective of :mod:`pyro_vaes.objectives` is built from the sample sites of a model trace
replayed against a guide trace (:func:`pyro_vaes.objectives.elbo.traces`). Each site gives one
term of the loss :math:`-\mathrm{ELBO}`, with the shape of the site's batch (one entry per
datapoint of a plate):

* an **observed** site (``obs=``, ``pyro.factor`` sites included):
  :math:`-\log p(x \mid z)`;
* a **latent** site, in model and guide: :math:`\mathrm{KL}(q(z \mid x)\,\|\,p(z))` in closed
  form where ``torch.distributions.kl_divergence`` is registered for the pair, else the one-draw
  estimate :math:`\log q(z \mid x) - \log p(z)` at the guide's draw;
* an **auxiliary** site, in the guide only: :math:`\log q(a)`.

Their sum is :math:`-\mathrm{ELBO} = -\mathbb E_q[\log p(x \mid z)] + \mathrm{KL}(q\,\|\,p)`.

**The rule.** Each term is multiplied by its site's ``scale`` and zeroed where its site's ``mask``
is false, ``scale_and_mask(term, site["scale"], site["mask"])`` (:func:`weigh`), exactly as Pyro's
``Trace_ELBO`` weighs every log density. A log-ratio weighs :math:`\log q` with the guide's site
and :math:`\log p` with the model's; the closed-form KL stands in for the pair only where the two
sites carry the same scale and mask (as when the handler wraps the site in model and guide, as
:class:`pyro_vaes.VAE` does) and takes that weight, so both forms have the same expectation.
Hence:

* a subsampled plate (``pyro.plate("data", N, subsample_size=B)``) scales its sites by
  :math:`N/B`: the loss estimates the whole data set's;
* ``poutine.scale(scale=beta)`` on a latent site (``VAE(beta=...)``) multiplies its KL: the
  beta-VAE. ``beta = 0`` is ``poutine.mask(mask=False)``, which removes the term;
* ``poutine.mask(mask=m)`` removes the terms of the datapoints where ``m`` is false.

Objectives that put something else in the place of a site's term (pieces of the KL, a batch
statistic, a critic's verdict) weigh it with the same site's scale and mask: per datapoint where
the replacement has one entry per datapoint, and as a whole where it is a statistic of the batch,
which takes a scale or a mask for the whole site but refuses one that varies across datapoints
(:func:`uniform_weight`). Importance weights (:mod:`pyro_vaes.objectives.importance`) use the
same terms without closed forms, with the rule inside the log weight except for the data plate's
subsample scale, which must stay outside the log-sum-exp.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from pyro.distributions import TorchDistribution
from pyro.distributions.util import scale_and_mask
from pyro.poutine.trace_struct import Trace
from torch.distributions import kl_divergence

__all__ = [
    "Term",
    "batch_statistic_site",
    "by_datapoint",
    "codes",
    "elbo_terms",
    "kl",
    "latent_site",
    "log_density_terms",
    "log_likelihood",
    "negative_elbo",
    "prior_of",
    "score_surrogate",
    "total",
    "uniform_weight",
    "unweighted",
    "weigh",
]

Site = Any  # a node of a Pyro trace (pyro.poutine.runtime.Message)
Weigh = Callable[[Site, torch.Tensor], torch.Tensor]


def weigh(site: Site, value: torch.Tensor, factor_out: float = 1.0) -> torch.Tensor:
    """The rule: ``value`` (a term of ``site``) times the site's scale, zero where it is masked.
    ``factor_out`` is a factor of the scale left out (the importance weights leave out the data
    plate's subsample factor)."""
    scale = site["scale"] if factor_out == 1.0 else site["scale"] / factor_out
    return scale_and_mask(value, scale, site["mask"])


def unweighted(site: Site, value: torch.Tensor) -> torch.Tensor:
    """The term as it is: the model's own density, no scale and no mask."""
    return value


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return False
    return bool(a == b)


def _same_weight(p: Site, q: Site) -> bool:
    return _same(p["scale"], q["scale"]) and _same(p["mask"], q["mask"])


def uniform_weight(site: Site, what: str) -> None:
    """Refuse a scale or mask of ``site`` that varies across datapoints (a tensor of more than one
    entry): ``what`` is a statistic of the whole batch, which one factor can weigh but a
    per-datapoint mask cannot (drop those datapoints from the batch instead)."""
    for key in ("scale", "mask"):
        value = site[key]
        if isinstance(value, torch.Tensor) and value.numel() > 1:
            raise ValueError(
                f"{what} is a statistic of the whole batch: it cannot take a per-datapoint "
                f"{key} on site {site['name']!r} (leave those datapoints out of the batch)"
            )


def _sample_sites(trace: Trace) -> dict[str, Site]:
    return {name: s for name, s in trace.nodes.items() if s["type"] == "sample"}


def _latent_sites(trace: Trace) -> list[Site]:
    return [s for s in trace.nodes.values() if s["type"] == "sample" and not s["is_observed"]]


def latent_site(model_tr: Trace, guide_tr: Trace, name: str) -> Site:
    """The guide's site ``name``, once checked to be a latent site of the model too, with the same
    scale and mask on both sides: the site whose weight the objectives apply to that latent's
    replacement terms."""
    q = guide_tr.nodes.get(name)
    p = model_tr.nodes.get(name)
    if q is None or q["type"] != "sample":
        raise ValueError(f"the guide has no latent site {name!r}")
    if p is None or p["type"] != "sample" or p["is_observed"]:
        raise ValueError(f"the model has no latent site {name!r}")
    if not _same_weight(p, q):
        raise ValueError(
            f"the model and the guide weigh the latent site {name!r} differently (scale or "
            "mask): put the poutine.scale / poutine.mask handler around it in both"
        )
    return q


def prior_of(model_tr: Trace, name: str) -> Any:
    """The distribution of the model's site ``name``."""
    site: Site = model_tr.nodes[name]
    return site["fn"]


def codes(site: Site) -> torch.Tensor:
    """The site's draws as codes ``(n, d)``: every batch dim flattened, the last dim kept."""
    z = site["value"]
    return z.reshape(-1, z.shape[-1])


def batch_statistic_site(
    model_tr: Trace, guide_tr: Trace, name: str, what: str
) -> tuple[Site, torch.Tensor]:
    """The latent site ``name`` (:func:`latent_site`) of an objective that charges it ``what``, a
    statistic of the whole batch (:func:`uniform_weight`), and its codes ``(n, d)``."""
    site = latent_site(model_tr, guide_tr, name)
    uniform_weight(site, what)
    return site, codes(site)


def _closed_form(q: Site, p: Site) -> torch.Tensor | None:
    try:
        return kl_divergence(q["fn"], p["fn"])
    except NotImplementedError:
        return None


def kl(model_tr: Trace, guide_tr: Trace, name: str) -> torch.Tensor:
    r""":math:`\mathrm{KL}(q\,\|\,p)` of the latent site ``name``, unweighted, one entry per batch
    entry of the site: closed form where registered, else :math:`\log q(z) - \log p(z)`."""
    q: Site = guide_tr.nodes[name]
    p: Site = model_tr.nodes[name]
    value = _closed_form(q, p)
    if value is None:
        value = q["fn"].log_prob(q["value"]) - p["fn"].log_prob(q["value"])
    return value


@dataclass(frozen=True)
class Term:
    """One site's term of :math:`-\\mathrm{ELBO}`: ``kind`` is ``"observed"``, ``"latent"`` or
    ``"auxiliary"``; ``loss`` its value, weighted, with the shape of the site's batch."""

    name: str
    kind: str
    loss: torch.Tensor


def _observed(name: str, p: Site, weight: Weigh) -> Term:
    return Term(name, "observed", -weight(p, p["fn"].log_prob(p["value"])))


def _terms(model_tr: Trace, guide_tr: Trace, weight: Weigh, closed_form: bool) -> dict[str, Term]:
    model_sites, guide_sites = _sample_sites(model_tr), _sample_sites(guide_tr)
    terms: dict[str, Term] = {}
    for name, p in model_sites.items():
        if p["is_observed"]:
            terms[name] = _observed(name, p, weight)
            continue
        q = guide_sites.get(name)
        if q is None:
            raise ValueError(
                f"the model's latent site {name!r} is not in the guide: the guide must draw "
                "every latent site of the model"
            )
        if closed_form and not q["fn"].has_rsample:
            raise ValueError(
                f"latent site {name!r} is not reparameterisable ({type(q['fn']).__name__}); "
                "use pyro.infer.Trace_ELBO or TraceGraph_ELBO, which add score-function terms"
            )
        value = _closed_form(q, p) if closed_form and _same_weight(p, q) else None
        if value is not None:
            loss = weight(q, value)
        else:
            z = q["value"]
            loss = weight(q, q["fn"].log_prob(z)) - weight(p, p["fn"].log_prob(z))
        terms[name] = Term(name, "latent", loss)
    for name, q in guide_sites.items():
        if name not in model_sites:
            terms[name] = Term(name, "auxiliary", weight(q, q["fn"].log_prob(q["value"])))
    return terms


def elbo_terms(model_tr: Trace, guide_tr: Trace) -> dict[str, Term]:
    """The terms of :math:`-\\mathrm{ELBO}` by site name, weighted by the rule, with closed-form
    KL terms where they apply; the guide must be reparameterised."""
    return _terms(model_tr, guide_tr, weigh, closed_form=True)


def log_density_terms(model_tr: Trace, guide_tr: Trace, weight: Weigh = weigh) -> dict[str, Term]:
    r"""The terms as log densities at the draw, no closed forms: their sum is
    :math:`-(\log p(x, z) - \log q(z, a \mid x))`, the negative log importance weight. ``weight``
    is :func:`weigh` (the rule), :func:`unweighted` (the model's density) or a variant of the
    rule (:mod:`pyro_vaes.objectives.importance`)."""
    return _terms(model_tr, guide_tr, weight, closed_form=False)


def total(terms: Iterable[Term]) -> torch.Tensor:
    """The sum of ``terms`` over every entry (a zero for no terms)."""
    out: torch.Tensor | None = None
    for t in terms:
        out = t.loss.sum() if out is None else out + t.loss.sum()
    return torch.zeros(()) if out is None else out


def negative_elbo(model_tr: Trace, guide_tr: Trace, without: Collection[str] = ()) -> torch.Tensor:
    r""":math:`-\mathrm{ELBO}` of one draw: minus the observed log densities plus, for each latent
    site, :math:`\mathrm{KL}(q\,\|\,p)` in closed form where registered, else
    :math:`\log q(z) - \log p(z)` at the drawn :math:`z`, and :math:`\log q` of auxiliary guide
    sites; every term weighed by its site's scale and mask (the module docstring). The sites in
    ``without`` are left out (for objectives that put terms of their own in their place). Guide
    sites with a score-function part add :func:`score_surrogate`."""
    terms = elbo_terms(model_tr, guide_tr)
    kept = [t for name, t in terms.items() if name not in without]
    value = total(kept)
    if any(_has_score_part(q["fn"]) for q in _latent_sites(guide_tr)):
        value = value + score_surrogate(guide_tr, kept)
    return value


def _has_score_part(fn: Any) -> bool:
    """Whether ``fn`` is partially reparameterised: its class gives ``score_parts`` a score
    function of its own (as the von Mises-Fisher's rejection correction does)."""
    return getattr(type(fn), "score_parts", None) is not TorchDistribution.score_parts


def score_surrogate(guide_tr: Trace, terms: Iterable[Term]) -> torch.Tensor:
    r"""A term of value zero whose gradient is the score-function part of every partially
    reparameterised guide site [1]: :math:`\nabla \mathbb E_q[f] = \mathbb E[\nabla_{path} f]
    + \mathbb E[f\,\nabla \ell]`, with :math:`\ell` the site's ``score_parts().score_function``
    and :math:`f` the draw's cost (the terms' sum), per datapoint where the shapes match the
    site's batch (datapoints are independent), else the whole draw's. From the per-datapoint
    cost the mean cost of the *other* entries is subtracted: a baseline independent of the
    entry's own draw, so the estimate stays unbiased while the common offset of the cost (some
    hundred nats) no longer multiplies the score. The cost's terms carry
    their own weights; the score is not weighed again (a latent masked out by ``beta = 0`` still
    shapes the reconstruction). Zero for fully reparameterised guides (nothing is computed).

    References:
        [1] Naesseth, Ruiz, Linderman, Blei. Reparameterization Gradients through
        Acceptance-Rejection Sampling Algorithms. AISTATS 2017.
    """
    out = torch.zeros(())
    terms = list(terms)
    for q in _latent_sites(guide_tr):
        if not _has_score_part(q["fn"]):
            continue
        score = q["fn"].score_parts(q["value"]).score_function
        if not isinstance(score, torch.Tensor):
            continue
        local, shared = torch.zeros(()), torch.zeros(())
        for t in terms:
            if t.loss.shape == score.shape:
                local = local + t.loss
            else:
                shared = shared + t.loss.sum()
        local = local.detach().expand(score.shape)
        if local.numel() > 1:  # leave-one-out baseline: the other entries' mean cost, which
            local = local - (local.sum() - local) / (local.numel() - 1)  # does not depend on z
        out = out + ((score - score.detach()) * (local + shared.detach())).sum()
    return out


def log_likelihood(model_tr: Trace) -> torch.Tensor:
    r""":math:`\log p(x \mid z)`: the observed sites' log densities, weighted, summed."""
    sites = _sample_sites(model_tr).items()
    return -total(_observed(name, s, weigh) for name, s in sites if s["is_observed"])


def by_datapoint(terms: Iterable[Term], size: int, dim: int = -1) -> torch.Tensor:
    """The sum of ``terms`` per datapoint, ``(size,)``: each term summed over every dim but
    ``dim`` (the data plate's); a term without that dim (a site outside the data plate) is shared
    out evenly, so the sum over the batch is the total."""
    out = torch.zeros(size)
    for t in terms:
        v = t.loss
        if v.dim() >= -dim and v.shape[dim] == size:
            v = v.movedim(dim, -1).reshape(-1, size).sum(0)
        else:
            v = (v.sum() / size).expand(size)
        out = out.to(v) + v
    return out
