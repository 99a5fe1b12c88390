"""Sample quality of the prior, the ex-post samplers and the second stage, for a VAE and an RAE.

mnist10k with a quarter of the training images held out (6,000 to train on, 2,000 held out, the
2,000 test images), MLP 784-512-16, dynamic binarisation, batch 100. Each seed trains ``vae`` and
``rae_l2`` for the same epochs, then decodes 2,000 draws (likelihood means) from each sampler:

* ``prior``: the model's standard normal prior;
* ``gmm``: a 10-component full-covariance Gaussian mixture fitted to the codes of the training
  images (``models.expost``; 10 components as in Ghosh et al., fixed in advance);
* ``maf``: a masked autoregressive flow fitted to the same codes (``models.expost`` defaults);
* ``gmm_draws`` (the VAE only): the same mixture fitted instead to one draw of q(z|x) per
  training image, the sample of the aggregate posterior that the second stage fits (the VAE's
  codes, ``encode``, are posterior means);
* ``two_stage`` (the VAE only): the trained VAE's weights loaded into a ``two_stage_vae`` (whose
  first stage is the same VAE), then its second stage fitted to draws of the aggregate posterior
  on the training images (``TwoStageVAE.fit_codes``, its defaults: 100 epochs): every sampler
  of the VAE decodes through the same first stage.

The codes are those of the training images binarised once, as the models saw them in training.
Sample quality is the Fréchet distance to the features of the 2,000 (grey) test images in the
project's classifier (``bench/generative.py``'s ``features``, the classifier trained on the 6,000
training images); the 2,000 held-out training images give the floor, the distance of real images
of the same number. Nothing is chosen on the test images.

Diagnostics of the aggregate posterior against the prior: on the held-out images, the mean log
density of their codes under the prior, the mixture and the flow (each fitted on the training
codes); for the VAE the rate (mean KL(q(z|x) || p(z))) and the active units (variance over x of
E[z|x] above 0.01); for the codes (the VAE: one draw of q(z|x) per training image, the
aggregate posterior's sample that the second stage fits; the RAE: its deterministic codes) their
mean norm, the extreme eigenvalues of their covariance and the KL from the Gaussian with their
mean and covariance to the prior, a lower bound on KL(q(z) || p(z)); and the trace of the
covariance of the codes the mixture and the flow are fitted to (the prior's is the dimension).

    OMP_NUM_THREADS=1 python bench/samplers.py --epochs 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import pyro_vaes as pv
from pyro_vaes.models import expost

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generative import features

SAMPLERS = {
    "vae": ("prior", "gmm", "maf", "gmm_draws", "two_stage"),
    "rae_l2": ("prior", "gmm", "maf"),
}


def gaussian_kl_to_standard(codes: torch.Tensor) -> float:
    """KL(N(m, C) || N(0, I)) for the mean ``m`` and covariance ``C`` of ``codes`` ``(N, d)``."""
    c = codes.double()
    m, cov = c.mean(0), torch.cov(c.T)
    return float(0.5 * (cov.trace() + m.pow(2).sum() - c.shape[1] - torch.logdet(cov)))


def code_moments(codes: torch.Tensor) -> dict[str, float]:
    """How far ``codes`` ``(N, d)`` are from a standard normal sample."""
    eig = torch.linalg.eigvalsh(torch.cov(codes.double().T))
    return {
        "code_norm": float(codes.norm(dim=1).mean()),
        "cov_eig_min": float(eig.min()),
        "cov_eig_max": float(eig.max()),
        "gaussian_kl": gaussian_kl_to_standard(codes),
    }


@torch.no_grad()
def vae_rate(model: Any, x: torch.Tensor) -> dict[str, float]:
    """The mean KL(q(z|x) || p(z)) over ``x`` and the number of active units."""
    prior = model.prior()
    kl, means = [], []
    for b in pv.data.batches(x, 1000):
        q = model.posterior(model.encoder(b))
        kl.append(torch.distributions.kl_divergence(q, prior))
        means.append(q.mean)
    return {
        "rate": float(torch.cat(kl).mean()),
        "active_units": int((torch.cat(means).var(0) > 0.01).sum()),
    }


def train(name: str, shape: tuple[int, ...], x: torch.Tensor, args: Any, seed: int) -> Any:
    torch.manual_seed(seed)
    model = pv.variants.build(name, shape, latent_dim=args.latent_dim)
    pv.variants.registry[name].fit(
        model,
        x,
        epochs=args.epochs,
        transform=pv.data.dynamic_binarize,
        seed=seed,
        device="cpu",
        progress=False,
    )
    return model.eval()


def second_stage_of(
    vae: Any, shape: tuple[int, ...], x: torch.Tensor, args: Any
) -> tuple[Any, torch.Tensor]:
    """A ``two_stage_vae`` whose first stage is the trained ``vae``, its second stage fitted to
    draws of the aggregate posterior of ``x``; and those draws."""
    model = pv.variants.build("two_stage_vae", shape, latent_dim=args.latent_dim)
    keys = model.load_state_dict(vae.state_dict(), strict=False)
    if keys.unexpected_keys or any(not k.startswith("second") for k in keys.missing_keys):
        raise RuntimeError(f"the VAE and the first stage differ: {keys}")
    model.eval()
    draws = model.codes(x)  # one z ~ q(z|x) per datapoint: a sample of the aggregate posterior
    return model.fit_codes(draws, epochs=args.second_epochs), draws


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--second-epochs", type=int, default=100)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default="/work/shared/data")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    splits = pv.data.load("mnist10k", args.data_root, val_fraction=0.25, seed=0)
    x_train, x_val, x_test = splits.x_train, splits.x_val, splits.x_test
    shape = tuple(x_train.shape[1:])
    clf = pv.classifier.train_classifier(x_train, splits.y_train, epochs=10, seed=0)
    accuracy = pv.classifier.accuracy(clf, x_test, splits.y_test)
    reference = features(clf, x_test)
    floor = pv.metrics.frechet_distance(reference, features(clf, x_val))
    print(f"classifier accuracy {accuracy:.3f}, held-out floor {floor:.1f}", flush=True)

    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        x_fit = pv.data.binarize(x_train, seed=seed)  # the codes' images, as training saw them
        x_held = pv.data.binarize(x_val, seed=seed)
        for name, samplers in SAMPLERS.items():
            t0 = time.perf_counter()
            model = train(name, shape, x_train, args, seed)
            row: dict[str, Any] = {"seed": seed, "model": name, "train_s": time.perf_counter() - t0}
            codes, held = expost.codes_of(model, x_fit), expost.codes_of(model, x_held)
            fitted = {s: expost.fit(s, codes, seed=seed) for s in ("gmm", "maf")}
            with torch.no_grad():
                row["heldout_logq"] = {"prior": float(model.prior().log_prob(held).mean())} | {
                    s: float(fitted[s].log_prob(held).mean()) for s in ("gmm", "maf")
                }
            if name == "vae":
                row |= vae_rate(model, x_held)
                two_stage, aggregate = second_stage_of(model, shape, x_fit, args)
                fitted["gmm_draws"] = expost.fit("gmm", aggregate, seed=seed)
                row |= code_moments(aggregate)
            else:
                row |= code_moments(codes)
            row["fitted_cov_trace"] = float(torch.cov(codes.double().T).trace())
            torch.manual_seed(seed + 1)
            draws = {
                "prior": lambda n, m=model: m.prior().sample((n,)),
                "gmm": fitted["gmm"].sample,
                "maf": fitted["maf"].sample,
            }
            if name == "vae":
                draws["gmm_draws"] = fitted["gmm_draws"].sample
                draws["two_stage"] = two_stage.sample_codes
            row["frechet"] = {}
            with torch.no_grad():
                for s in samplers:
                    images = model.decode(draws[s](args.samples))
                    row["frechet"][s] = pv.metrics.frechet_distance(
                        reference, features(clf, images)
                    )
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(json.dumps(row), flush=True)

    def stat(values: list[float], digits: int = 1) -> str:
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"

    print(
        f"\nmnist10k (6,000 train, 2,000 held out, 2,000 test), {args.epochs} epochs, latent dim "
        f"{args.latent_dim}, seeds {args.seeds}, {args.samples} samples; classifier test accuracy "
        f"{accuracy:.3f}; {time.perf_counter() - start:.0f} s in all\n"
    )
    columns = ("prior", "gmm", "maf", "gmm_draws", "two_stage")
    print("| model | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|")
    for name, samplers in SAMPLERS.items():
        mine = [r for r in rows if r["model"] == name]
        cells = [stat([r["frechet"][s] for r in mine]) if s in samplers else "-" for s in columns]
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    print(f"| held-out training images (floor) | {floor:.1f} |" + " |" * (len(columns) - 1))
    print(
        "\n| model | held-out log q: prior | gmm | maf | trace cov (fitted codes) | code norm "
        "| cov eig min | cov eig max | Gaussian KL to prior | rate | active units |\n"
        + "|---" * 11
        + "|"
    )
    for name in SAMPLERS:
        mine = [r for r in rows if r["model"] == name]
        cells = [stat([r["heldout_logq"][s] for r in mine]) for s in ("prior", "gmm", "maf")]
        cells += [
            stat([r[k] for r in mine], 2)
            for k in ("fitted_cov_trace", "code_norm", "cov_eig_min", "cov_eig_max", "gaussian_kl")
        ]
        cells += [stat([r[k] for r in mine]) if k in mine[0] else "-" for k in ("rate",)]
        cells += [stat([r["active_units"] for r in mine]) if name == "vae" else "-"]
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    if args.json:
        out = {"args": vars(args), "accuracy": accuracy, "floor": floor, "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
