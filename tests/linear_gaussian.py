"""The linear-Gaussian model, where log p(x) and p(z | x) are exact: z ~ N(0, I_K),
x | z ~ N(W z + B, SIGMA^2 I_D)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

D, K = 5, 2
torch.manual_seed(1)
W = torch.randn(D, K)
B = torch.randn(D)
SIGMA = 0.5


def model(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(K), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T + B, SIGMA).to_event(1), obs=x)


def exact_log_px(x: torch.Tensor) -> torch.Tensor:
    cov = W @ W.T + SIGMA**2 * torch.eye(D)
    return dist.MultivariateNormal(B, cov).log_prob(x)


def posterior(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact posterior p(z | x) = N(m, S) of the linear-Gaussian model."""
    prec = torch.eye(K) + W.T @ W / SIGMA**2
    cov = torch.linalg.inv(prec)
    mean = (x - B) @ W @ cov.T / SIGMA**2
    return mean, cov


def exact_guide(x: torch.Tensor) -> None:
    mean, cov = posterior(x)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.MultivariateNormal(mean, cov))


def rough_guide(x: torch.Tensor) -> None:
    """A mean-field guide with the exact means but too-wide scales: a loose bound with bounded
    importance weights (low-variance estimates)."""
    mean, cov = posterior(x)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(mean, 2.0 * cov.diagonal().sqrt()).to_event(1))


def draw(n: int, seed: int = 2) -> torch.Tensor:
    """``n`` datapoints from the model."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, K, generator=gen)
    return z @ W.T + B + SIGMA * torch.randn(n, D, generator=gen)
