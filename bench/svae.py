"""The S-VAE against the Gaussian VAE (Davidson et al. 2018, Table 2), with diagnostics.

For each latent dimension d and seed, ``vae`` (N-VAE, codes in R^d) and ``svae`` (S-VAE, codes
on the sphere S^d in R^(d+1): d degrees of freedom each, as the authors pair them in their code,
``ModelVAE(z_dim=Z_DIM + 1, distribution='vmf')`` in s-vae-pytorch's examples/mnist.py) are
built with the paper's MLP (784-256-128 encoder, mirrored decoder, ReLU), trained by ``pyro_vaes.fit`` on the
8,000 mnist10k training images with dynamic binarisation (Adam, lr 1e-3), and scored on the 2,000
test images (binarised once) by the importance-sampled bound with k draws. After every epoch
it records, on 1,000 fixed training images binarised once (training diagnostics, never used to
select anything):

* the KL of the posterior to the prior, per datapoint (closed form);
* the VAE's KL per latent dimension (closed form, mean over the images);
* the S-VAE's concentration kappa (median and quartiles over the images);
* active units (Burda et al. 2016): coordinates d with Cov_x(E_q[z_d]) > 0.01, where
  E_q[z] = A_m(kappa) mu for the vMF.

    python bench/svae.py --latent-dim 2 5 10 20 40 --seeds 0 1 2 --epochs 30 --json svae.json
    python bench/svae.py --table svae.json          # the summary of a saved run

Results already in ``--json`` are kept and not run again, so an interrupted sweep continues.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.distributions import Normal, kl_divergence

import pyro_vaes as pv

HIDDEN = (256, 128)
VARIANTS = ("vae", "svae")


class Diagnostics(pv.callbacks.Callback):
    """Per-epoch posterior statistics of a VAE on fixed images."""

    def __init__(self, model: Any, x: torch.Tensor) -> None:
        self.model, self.x = model, x
        self.rows: list[dict[str, Any]] = []

    @torch.no_grad()
    def on_epoch_end(self, state: pv.callbacks.FitState) -> None:
        model = self.model
        was_training = model.training
        model.eval()
        q = model.posterior(model.encoder(self.x))
        prior = model.prior()
        row: dict[str, Any] = {
            "epoch": state.epoch,
            "loss": state.history.loss[-1] if state.history.loss else None,
            "kl": float(kl_divergence(q, prior).mean()),
            "active_units": int((q.mean.var(0) > 0.01).sum()),
        }
        if hasattr(q, "concentration"):  # the vMF posterior
            k = q.concentration
            qs = torch.quantile(k, torch.tensor([0.25, 0.5, 0.75]))
            row["kappa_quartiles"] = [float(v) for v in qs]
        else:
            base = q.base_dist
            kl_dim = kl_divergence(base, Normal(torch.zeros_like(base.loc), 1.0)).mean(0)
            row["kl_per_dim"] = [round(float(v), 4) for v in kl_dim]
        self.rows.append(row)
        model.train(was_training)


def run_one(
    name: str, latent_dim: int, seed: int, data: Any, epochs: int, k: int
) -> dict[str, Any]:
    x_train, x_diag, x_test = data
    torch.manual_seed(seed)
    ambient = latent_dim + 1 if name == "svae" else latent_dim  # S^d lies in R^(d+1)
    model = pv.variants.build(
        name, tuple(x_train.shape[1:]), latent_dim=ambient, hidden=HIDDEN, likelihood="bernoulli"
    )
    diag = Diagnostics(model, x_diag)
    start = time.perf_counter()
    pv.variants.registry[name].fit(
        model,
        x_train,
        epochs=epochs,
        batch_size=100,
        transform=pv.data.dynamic_binarize,
        seed=seed,
        device="cpu",
        progress=False,
        callbacks=[diag],
    )
    model.eval()
    nll = -float(pv.evaluate.log_likelihood(model.model, model.guide, x_test, k).mean())
    return {
        "variant": name,
        "latent_dim": latent_dim,
        "ambient_dim": ambient,
        "seed": seed,
        "epochs": epochs,
        "k": k,
        "nll": nll,
        "seconds": time.perf_counter() - start,
        "epochs_log": diag.rows,
    }


def last(r: dict[str, Any]) -> dict[str, Any]:
    """The diagnostics after the last epoch."""
    return r["epochs_log"][-1]


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: mean NLL over seeds per (d, variant), final KL, active units, median kappa."""
    lines = [
        "| d | N-VAE NLL | S-VAE NLL | S-VAE - N-VAE | seeds | KL (N / S) | active units (N / S) "
        "| S-VAE median kappa |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault((r["latent_dim"], r["variant"]), []).append(r)
    for d in sorted({r["latent_dim"] for r in results}):
        n, s = by.get((d, "vae"), []), by.get((d, "svae"), [])
        if not n or not s:
            continue

        def mean(rs: list[dict[str, Any]], f: Any) -> float:
            return statistics.fmean(f(r) for r in rs)

        def spread(rs: list[dict[str, Any]]) -> str:
            v = [r["nll"] for r in rs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            return f"{statistics.fmean(v):.2f} ± {sd:.2f}" if len(v) > 1 else f"{v[0]:.2f}"

        seeds = sorted({r["seed"] for r in n} & {r["seed"] for r in s})
        gap = statistics.fmean(
            next(x["nll"] for x in s if x["seed"] == sd)
            - next(x["nll"] for x in n if x["seed"] == sd)
            for sd in seeds
        )
        lines.append(
            f"| {d} | {spread(n)} | {spread(s)} | {gap:+.2f} | {len(seeds)} "
            f"| {mean(n, lambda r: last(r)['kl']):.1f} / {mean(s, lambda r: last(r)['kl']):.1f} "
            f"| {mean(n, lambda r: last(r)['active_units']):.1f} / "
            f"{mean(s, lambda r: last(r)['active_units']):.1f} "
            f"| {mean(s, lambda r: last(r)['kappa_quartiles'][1]):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latent-dim", type=int, nargs="+", default=[2, 5, 10, 20, 40])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--num-samples", type=int, default=1000, help="IWAE draws for the test NLL")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--json", default=None, help="append each result to this JSON file as it ends")
    p.add_argument("--table", default=None, help="print the summary of a saved JSON and exit")
    args = p.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    torch.set_num_threads(args.threads)
    splits = pv.data.load("mnist10k", args.data_root)
    data = (
        splits.x_train,
        pv.data.binarize(splits.x_train[:1000], seed=2),
        pv.data.binarize(splits.x_test, seed=1),
    )
    out = Path(args.json) if args.json else None
    results: list[dict[str, Any]] = json.loads(out.read_text()) if out and out.exists() else []
    for d in args.latent_dim:
        for seed in args.seeds:
            for name in args.variant:
                done = {(r["variant"], r["latent_dim"], r["seed"], r["epochs"]) for r in results}
                if (name, d, seed, args.epochs) in done:
                    continue
                r = run_one(name, d, seed, data, args.epochs, args.num_samples)
                results.append(r)
                print(
                    f"d={d} seed={seed} {name}: NLL {r['nll']:.2f} ({r['seconds']:.0f} s)",
                    flush=True,
                )
                if out:
                    out.write_text(json.dumps(results))
    print(table(results))


if __name__ == "__main__":
    main()
