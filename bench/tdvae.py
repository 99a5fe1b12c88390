"""TD-VAE's jumpy predictions against a model of frames that ignores the past.

On the bundled noisy harmonic oscillator (``pv.data.load("oscillator")``: 32 noisy positions per
sequence, periods of 8, 12 or 16 steps), both models are fitted on the training split (10% held
out for validation) and scored on the test split by the importance-sampled log-likelihood of a
future frame, in nats per sequence (k draws):

* ``tdvae``: the predictive :math:`\\log p(x_{t+\\delta} \\mid x_{\\le t})`, one jump of the
  transition from the belief after ``t`` frames (``{"x": x, "t1": t, "t2": t + delta}``);
* ``vae``: :math:`\\log p(x_{t+\\delta})` under a VAE of single frames (every training frame a
  datapoint, the same hidden size and a Gaussian likelihood with a learned scale), which ignores
  the past: the best it can do is the marginal of the positions;
* ``kalman``: the predictive of the generator's own linear-Gaussian dynamics
  (:func:`pyro_vaes.data.sequences.oscillator_log_predictive`, a Kalman filter per period mixed
  over the periods), the ceiling.

The gap to ``vae`` is what the belief carries about the future. Both Gaussian likelihoods learn
their scale from ``--init-scale``; TD-VAE's learned scale and its two KL terms at the pair
``(t, t + 1)`` are printed too (``--init-scale 1`` reproduces the collapse: the KL terms go to 0
and the predictive to the ``vae`` column).

    python bench/tdvae.py --epochs 40 --vae-epochs 10
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from pyro import poutine

import pyro_vaes as pv
from pyro_vaes.data.sequences import oscillator_log_predictive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--vae-epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--init-scale", type=float, default=0.1, help="the likelihoods' initial sigma")
    p.add_argument("--context", type=int, default=16, help="frames seen before the jump")
    p.add_argument("--skips", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data = pv.data.load("oscillator", val_fraction=0.1)
    optim = functools.partial(torch.optim.Adam, lr=args.lr)
    assert data.x_val is not None

    torch.manual_seed(args.seed)
    start = time.time()
    td = pv.variants.build("tdvae", data.shape, scale=args.init_scale)
    history = pv.variants.registry["tdvae"].fit(
        td, data.x_train, epochs=args.epochs, batch_size=64, optim=optim,
        val_data=data.x_val, progress=False, seed=args.seed,
    )  # fmt: skip
    print(f"tdvae: {time.time() - start:.0f} s, validation loss {history.val_loss[-1]:.3f}")

    torch.manual_seed(args.seed)
    start = time.time()
    frames = data.x_train.reshape(-1, 1)
    vae = pv.variants.build("vae", (1,), latent_dim=2, hidden=(64,), likelihood="gaussian")
    vae.likelihood = pv.likelihoods.Gaussian(args.init_scale, learn_scale=True)
    history = pv.fit(
        vae.model, vae.guide, frames, epochs=args.vae_epochs, batch_size=512, optim=optim,
        val_data=data.x_val.reshape(-1, 1), progress=False, seed=args.seed,
    )  # fmt: skip
    print(f"vae of frames: {time.time() - start:.0f} s, validation loss {history.val_loss[-1]:.3f}")

    x = data.x_test
    n = x.shape[0]
    t1 = torch.full((n,), args.context)
    torch.manual_seed(args.seed)
    pair = {"t1": t1, "t2": t1 + 1}
    with torch.no_grad():
        guide_tr = poutine.trace(td.guide).get_trace(x, **pair)
        model_tr = poutine.trace(poutine.replay(td.model, trace=guide_tr)).get_trace(x, **pair)
    kl = {
        s: float((guide_tr.nodes[s]["fn"].log_prob(guide_tr.nodes[s]["value"])
                  - model_tr.nodes[s]["fn"].log_prob(guide_tr.nodes[s]["value"])).mean())
        for s in ("z2", "z1")
    }  # fmt: skip
    print(f"tdvae: learned sigma {float(td.likelihood.scale.detach()):.3f}, at (t, t + 1) on the test "
          f"sequences log p_B(z2|b2) - log p_T(z2|z1) = {kl['z2']:.3f} nats, "
          f"log q_S(z1|..) - log p_B(z1|b1) = {kl['z1']:.3f} nats")  # fmt: skip
    print(f"\ntest log-likelihood of x[t+skip] (nats per sequence), t = {args.context}, k = "
          f"{args.num_samples}, {n} test sequences")  # fmt: skip
    print("| skip | tdvae log p(x_t+skip \\| x_<=t) | VAE of frames log p(x_t+skip) | Kalman |")
    print("|---|---|---|---|")
    for skip in args.skips:
        batch = {"x": x, "t1": t1, "t2": t1 + skip}
        torch.manual_seed(args.seed)
        ll_td = pv.evaluate.log_likelihood(td.model, td.guide, batch, args.num_samples)
        target = x[:, args.context + skip - 1]
        ll_vae = pv.evaluate.log_likelihood(vae.model, vae.guide, target, args.num_samples)
        ll_kf = oscillator_log_predictive(x, args.context, skip)
        print(f"| {skip} | {ll_td.mean():.3f} +- {ll_td.std() / n**0.5:.3f} | "
              f"{ll_vae.mean():.3f} +- {ll_vae.std() / n**0.5:.3f} | "
              f"{ll_kf.mean():.3f} +- {ll_kf.std() / n**0.5:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
