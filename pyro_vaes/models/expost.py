r"""Ex-post density estimation: a density fitted to a trained model's codes of its training data,
to sample from instead of the prior.

A VAE's aggregate posterior :math:`q(z) = \frac1N \sum_n q(z \mid x_n)` rarely fills its prior:
decoding prior draws that fall where no training code lies gives poor samples. Fitting a density
:math:`\hat q` to the codes :math:`E(x_n)` after training, and decoding draws from it, is the
ex-post density estimation of Ghosh et al. [1] (for the RAE, which has no sampling prior of its
own) and applies to every model whose codes live in :math:`\mathbb R^d`:

* ``"gmm"``: :class:`GaussianMixtureSampler`, a mixture of full-covariance Gaussians fitted by
  scikit-learn's EM (the RAE's ex-post density, :func:`fit_gaussian_mixture`);
* ``"maf"``: :class:`MAFSampler`, a masked autoregressive flow [2]: stacked Pyro
  ``affine_autoregressive`` transforms with reversed orders between them, over a fixed
  standardisation of the codes, fitted by maximum likelihood with Adam. The flow is used in the
  MAF direction: a code to the noise in one pass (density evaluation, the training hot path),
  the noise to a code by inverting each layer, :math:`d` passes (sampling);
* ``"prior"``: the model's own prior (:meth:`~pyro_vaes.protocols.GenerativeModel.sample`).

    >>> codes = model.encode(x_train)
    >>> sampler = expost.fit("maf", codes)
    >>> images = model.decode(sampler.sample(64))

References:
    [1] Ghosh, Sajjadi, Vergari, Black, Schoelkopf. From Variational to Deterministic
    Autoencoders. ICLR 2020.
    [2] Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density Estimation.
    NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions import transforms as T
from torch import nn

from pyro_vaes.data import batches
from pyro_vaes.registry import Registry

__all__ = [
    "NAMES",
    "ExPostSampler",
    "GaussianMixtureSampler",
    "MAFSampler",
    "codes_of",
    "fit",
    "fit_gaussian_mixture",
    "gaussian_mixture",
    "registry",
]


def gaussian_mixture(
    logits: torch.Tensor, loc: torch.Tensor, scale_tril: torch.Tensor
) -> dist.MixtureSameFamily:
    """The mixture of full-covariance Gaussians with these weights' logits ``(K,)``, means
    ``(K, d)`` and Cholesky factors ``(K, d, d)``."""
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits), dist.MultivariateNormal(loc, scale_tril=scale_tril)
    )


def fit_gaussian_mixture(
    codes: torch.Tensor, components: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits, loc, scale_tril)`` of a ``components``-Gaussian mixture with full covariances
    fitted to ``codes`` ``(N, d)`` by scikit-learn's EM (``reg_covar`` 1e-5), in double
    precision on the CPU."""
    from sklearn.mixture import GaussianMixture

    x = codes.detach().double().cpu().numpy()
    if x.shape[0] < components:
        raise ValueError(
            f"fitting {components} components needs at least {components} codes, got {len(x)}"
        )
    gmm = GaussianMixture(components, covariance_type="full", reg_covar=1e-5, random_state=seed)
    gmm.fit(x)
    return (
        torch.as_tensor(gmm.weights_).log(),
        torch.as_tensor(gmm.means_),
        torch.linalg.cholesky(torch.as_tensor(gmm.covariances_)),
    )


@torch.no_grad()
def codes_of(model: Any, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``model.encode`` of ``x`` in batches, on the model's device: the codes to fit to."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return torch.cat([model.encode(b.to(device)) for b in batches(x, batch_size)])


class ExPostSampler(nn.Module):
    """A density over codes ``(d,)`` fitted after training: :meth:`fit` on codes ``(N, d)``,
    then :meth:`log_prob` and :meth:`sample` of :meth:`distribution`."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = int(latent_dim)

    def fit(self, codes: torch.Tensor, seed: int = 0) -> ExPostSampler:
        raise NotImplementedError

    def distribution(self) -> dist.TorchDistribution:
        raise NotImplementedError

    def _check(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.shape[1] != self.latent_dim or not len(codes):
            raise ValueError(
                f"codes must be (N, {self.latent_dim}) with N >= 1, got {tuple(codes.shape)}"
            )
        if not torch.isfinite(codes).all():
            raise ValueError("the codes are not all finite")
        return codes

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """The fitted log density of each code, ``(N,)``."""
        return self.distribution().log_prob(codes)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` codes ``(n, d)`` from the fitted density."""
        return self.distribution().sample((n,))


class GaussianMixtureSampler(ExPostSampler):
    """A mixture of ``components`` full-covariance Gaussians (:func:`fit_gaussian_mixture`)."""

    logits: torch.Tensor
    loc: torch.Tensor
    scale_tril: torch.Tensor

    def __init__(self, latent_dim: int, components: int = 10) -> None:
        super().__init__(latent_dim)
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        d, k = self.latent_dim, components
        self.register_buffer("logits", torch.zeros(k))
        self.register_buffer("loc", torch.zeros(k, d))
        self.register_buffer("scale_tril", torch.eye(d).expand(k, d, d).clone())

    def fit(self, codes: torch.Tensor, seed: int = 0) -> GaussianMixtureSampler:
        logits, loc, scale_tril = fit_gaussian_mixture(self._check(codes), len(self.logits), seed)
        for buffer, value in (
            (self.logits, logits),
            (self.loc, loc),
            (self.scale_tril, scale_tril),
        ):
            buffer.copy_(value.to(buffer))
        return self

    def distribution(self) -> dist.MixtureSameFamily:
        return gaussian_mixture(self.logits, self.loc, self.scale_tril)


class MAFSampler(ExPostSampler):
    r"""A masked autoregressive flow over the codes: ``layers`` Pyro ``AffineAutoregressive``
    transforms (MADE networks of ``hidden`` units, soft-clamped log scales), their orders
    reversed between layers, after the fixed standardisation :math:`(z - m)/s` of the training
    codes; fitted by Adam (``steps`` minibatches of ``batch_size``, learning rate ``lr``).

    The noise :math:`u` of a code :math:`z` is :math:`u = f_L \circ \dots \circ f_1((z - m)/s)`
    with each :math:`f_l` one autoregressive pass, so
    :math:`\log \hat q(z) = \log \mathcal N(u; 0, I) + \sum_l \log\lvert\det J_{f_l}\rvert -
    \sum_i \log s_i`.
    """

    shift: torch.Tensor
    spread: torch.Tensor

    def __init__(
        self,
        latent_dim: int,
        layers: int = 5,
        hidden: int = 64,
        steps: int = 1000,
        batch_size: int = 256,
        lr: float = 3e-3,
    ) -> None:
        super().__init__(latent_dim)
        if layers < 1 or hidden < 1 or steps < 0 or batch_size < 1 or lr <= 0:
            raise ValueError("need layers, hidden and batch_size >= 1, steps >= 0 and lr > 0")
        d = self.latent_dim
        self.flows = nn.ModuleList(
            T.affine_autoregressive(d, hidden_dims=[hidden, hidden], stable=False)
            for _ in range(layers)
        )
        self.register_buffer("shift", torch.zeros(d))
        self.register_buffer("spread", torch.ones(d))
        self.register_buffer("reverse", torch.arange(d - 1, -1, -1))
        self.steps, self.batch_size, self.lr = int(steps), int(batch_size), float(lr)

    def _to_noise(self) -> list[Any]:
        """The transforms from a code to the noise, in order (each a single pass)."""
        chain: list[Any] = [T.AffineTransform(-self.shift / self.spread, 1.0 / self.spread, 1)]
        for i, flow in enumerate(self.flows):
            if i:
                chain.append(T.Permute(self.reverse))
            chain.append(flow)
        return chain

    def distribution(self) -> dist.TransformedDistribution:
        base = dist.Normal(torch.zeros_like(self.shift), 1.0).to_event(1)
        return dist.TransformedDistribution(base, [t.inv for t in reversed(self._to_noise())])

    def fit(self, codes: torch.Tensor, seed: int = 0) -> MAFSampler:
        codes = self._check(codes).detach().to(self.shift)
        self.shift.copy_(codes.mean(0))
        self.spread.copy_(codes.std(0, unbiased=False).clamp_min(1e-6))
        gen = torch.Generator(device=codes.device).manual_seed(seed)
        optimizer = torch.optim.Adam(self.flows.parameters(), lr=self.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, self.steps))
        was_training = self.training
        self.train()
        with torch.enable_grad():
            for _ in range(self.steps):
                take = torch.randint(
                    len(codes), (self.batch_size,), generator=gen, device=gen.device
                )
                loss = -self.log_prob(codes[take]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        self.train(was_training)
        return self


#: sampler name -> ``latent_dim -> ExPostSampler`` (``"prior"`` is the model's own prior and
#: needs no fit; see :func:`fit`)
registry: Registry[Callable[[int], ExPostSampler]] = Registry("sampler")
registry.register("gmm", GaussianMixtureSampler)
registry.register("maf", MAFSampler)

#: every name :func:`fit` and the CLI's ``sample --sampler`` take
NAMES = ("prior", *registry)


def fit(name: str, codes: torch.Tensor, seed: int = 0, **options: Any) -> ExPostSampler:
    """The sampler registered as ``name`` (``"gmm"``, ``"maf"``), fitted to ``codes``
    ``(N, d)``; ``options`` go to its constructor."""
    if name == "prior":
        raise ValueError("the 'prior' sampler is the model's own prior: nothing to fit")
    return registry[name](codes.shape[-1], **options).to(codes.device).fit(codes, seed)
