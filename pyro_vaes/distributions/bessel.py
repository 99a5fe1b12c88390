r"""The logarithm of the modified Bessel function of the first kind, :math:`\log I_v(x)`, for
any order :math:`v \ge 0` and argument :math:`x > 0`, in torch (differentiable in :math:`x`).

Two regimes, joined where both are accurate to about 1e-9 (relative, in :math:`I_v`), with
:math:`s = \sqrt{v^2 + x^2}`:

* :math:`s < 20`: the power series
  :math:`I_v(x) = \sum_k (x/2)^{2k+v} / (k!\,\Gamma(v+k+1))`, summed in log space;
* :math:`s \ge 20`: Debye's uniform asymptotic expansion written in :math:`s` and
  :math:`t = v/s`,

  .. math::
      \log I_v(x) \approx s + v \log\frac{x}{v + s} - \tfrac12 \log(2\pi s)
      + \log \sum_{k=0}^{5} \frac{u_k(t)}{v^k},
      \qquad \frac{u_k(t)}{v^k} = \frac{t^k p_k(t^2)}{v^k} = \frac{p_k(t^2)}{s^k},

  which is uniform in :math:`x` for large :math:`v` and turns into Hankel's large-argument
  expansion for small :math:`v`, so it holds wherever :math:`s` is large.

Nothing here under- or overflows: ``scipy.special.ive`` underflows to 0 for large orders and
small arguments (e.g. :math:`v = 127`, :math:`x = 10^{-4}`), which is what makes a naive
von Mises-Fisher log-normaliser NaN at high dimension.

References:
    [1] NIST Digital Library of Mathematical Functions, 10.25.2 (series) and 10.41.3 (uniform
    asymptotic expansion; :math:`u_k` from 10.41.10).
"""

from __future__ import annotations

import math

import torch

__all__ = ["bessel_iv_ratio", "log_bessel_iv"]

_SWITCH = 20.0
_SERIES_TERMS = 64

# p_k(tau) coefficients (ascending powers of tau = t^2) and denominators: u_k(t) = t^k p_k(t^2)
_DEBYE = [
    ([3.0, -5.0], 24.0),
    ([81.0, -462.0, 385.0], 1152.0),
    ([30375.0, -369603.0, 765765.0, -425425.0], 414720.0),
    ([4465125.0, -94121676.0, 349922430.0, -446185740.0, 185910725.0], 39813120.0),
    (
        [
            1519035525.0,
            -49286948607.0,
            284499769554.0,
            -614135872350.0,
            566098157625.0,
            -188699385875.0,
        ],
        6688604160.0,
    ),
]


def _debye(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    s = torch.sqrt(v * v + x * x)
    tau = (v / s) ** 2
    total = torch.ones_like(s)
    inv_s_k = torch.ones_like(s)
    for coeffs, denom in _DEBYE:
        inv_s_k = inv_s_k / s
        poly = torch.zeros_like(s)
        for c in reversed(coeffs):
            poly = poly * tau + c
        total = total + inv_s_k * poly / denom
    return s + v * torch.log(x / (v + s)) - 0.5 * torch.log(2 * math.pi * s) + torch.log(total)


def _series(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    k = torch.arange(_SERIES_TERMS, dtype=x.dtype, device=x.device)
    log_half_x = torch.log(x / 2).unsqueeze(-1)
    terms = (
        (2 * k + v.unsqueeze(-1)) * log_half_x
        - torch.lgamma(k + 1)
        - torch.lgamma(v.unsqueeze(-1) + k + 1)
    )
    return torch.logsumexp(terms, dim=-1)


def log_bessel_iv(v: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log I_v(x)`, elementwise, computed in float64 and returned in ``x``'s dtype.

    :param v: order(s), :math:`v \ge 0` (broadcast against ``x``).
    :param x: argument(s), :math:`x > 0`.
    """
    dtype = x.dtype
    x64 = x.to(torch.float64)
    v64 = torch.as_tensor(v, dtype=torch.float64, device=x.device)
    v64, x64 = torch.broadcast_tensors(v64, x64)
    s = torch.sqrt(v64 * v64 + x64 * x64)
    use_series = s < _SWITCH
    # each branch sees only arguments where it is finite, so no NaN leaks into the gradients
    x_series = torch.where(use_series, x64, torch.ones_like(x64))
    x_debye = torch.where(use_series, torch.full_like(x64, _SWITCH), x64)
    out = torch.where(use_series, _series(v64, x_series), _debye(v64, x_debye))
    return out.to(dtype)


def bessel_iv_ratio(v: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    r""":math:`I_{v+1}(x) / I_v(x)`, the mean resultant length of a von Mises-Fisher
    distribution, from the difference of the two logarithms."""
    v_t = torch.as_tensor(v, dtype=torch.float64, device=x.device)
    ratio = torch.exp(log_bessel_iv(v_t + 1, x.double()) - log_bessel_iv(v_t, x.double()))
    return ratio.to(x.dtype)
