"""Fit a VAE on the bundled 8x8 digits and run the whole posterior predictive analysis: arviz
InferenceData, test statistics with az.plot_ppc, p-values, pixel calibration, az.summary and
az.waic, class frequencies through a classifier, and the pictures; then the same checks on a
mis-specified model (a Gaussian likelihood whose fixed sigma is far too small), where the
p-values pile up at 0.

python examples/analysis.py --out analysis
"""

from __future__ import annotations

import argparse
from pathlib import Path

import arviz as az
import numpy as np
import torch

import pyro_vaes as pv


def fit_vae(splits: pv.data.Splits, likelihood: pv.likelihoods.Likelihood, binary: bool) -> pv.VAE:
    print(f"fitting a VAE with the {type(likelihood).__name__} likelihood", flush=True)
    torch.manual_seed(0)
    vae = pv.variants.build("vae", splits.shape, latent_dim=8, hidden=(256,))
    vae.likelihood = likelihood
    pv.fit(
        vae.model,
        vae.guide,
        splits.x_train,
        epochs=40,
        transform=pv.data.dynamic_binarize if binary else None,
    )
    return vae.eval()


def check(vae: pv.VAE, x: torch.Tensor, stats: dict, out: Path, tag: str) -> None:
    print(f"posterior predictive draws ({tag})", flush=True)
    idata = pv.posterior_predictive(vae.model, vae.guide, x, num_samples=100)
    stat_idata = pv.checks.statistics(idata, stats)
    pvalues = pv.checks.pvalues(stat_idata)
    print(f"\n== {tag}: share of datapoints with p < 0.05 or p > 0.95")
    for name, p in pvalues.items():
        print(f"  {name:>15}: {np.mean((p < 0.05) | (p > 0.95)):.2f}")
    pv.plots.ppc_plot(stat_idata, out / f"{tag}_ppc.png")
    pv.plots.pvalue_plot(pvalues, out / f"{tag}_pvalues.png")
    if tag == "bernoulli":
        cal = pv.checks.calibration(idata)
        print(f"  pixel calibration: expected calibration error {cal.ece:.3f}")
        pv.plots.calibration_plot(cal, out / f"{tag}_calibration.png")
        print(az.summary(idata, var_names=["z"], coords={"datapoint": [0]}, kind="stats"))
        print(az.waic(idata))
        idata.to_netcdf(str(out / "bernoulli_predictive.nc"))


def pictures(vae: pv.VAE, splits: pv.data.Splits, x: torch.Tensor, out: Path) -> None:
    geo = pv.geometry.of(vae.prior)
    z = vae.encode(x[:8])
    walk = pv.geometry.traverse(geo, z[0], torch.linspace(-2.5, 2.5, 9))
    decode = vae.likelihood.mean
    pv.plots.save_image_grid(
        decode(vae.decoder(walk.reshape(-1, z.shape[1]))), out / "traversals.png", ncol=9
    )
    path = torch.cat([pv.geometry.interpolate(geo, z[i], z[i + 4], 10) for i in range(4)])
    pv.plots.save_image_grid(decode(vae.decoder(path)), out / "interpolations.png", ncol=10)
    pv.plots.save_image_grid(vae.sample(64), out / "samples.png")
    pv.plots.latent_scatter(vae.encode(x), splits.y_test, out / "latent.png", "test codes by label")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="analysis")
    out = Path(p.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    splits = pv.data.load("digits")
    print("training the classifier behind the class check", flush=True)
    clf = pv.classifier.train_classifier(splits.x_train, splits.y_train, epochs=10)
    print(
        f"classifier test accuracy {pv.classifier.accuracy(clf, splits.x_test, splits.y_test):.3f}"
    )
    predicted_class = pv.checks.class_statistic(clf)
    # statistics that are not functions of each other, for binary and for continuous images
    binary_stats = {**pv.checks.image_statistics(binary=True), "predicted_class": predicted_class}
    stats = {**pv.checks.image_statistics(), "predicted_class": predicted_class}

    binary = splits.map(lambda x: pv.data.binarize(x, seed=1))
    vae = fit_vae(splits, pv.likelihoods.Bernoulli(), binary=True)
    check(vae, binary.x_test, binary_stats, out, "bernoulli")
    pictures(vae, splits, binary.x_test, out)

    wrong = fit_vae(splits, pv.likelihoods.Gaussian(0.01), binary=False)
    check(wrong, splits.x_test, stats, out, "gaussian_sigma_0.01")
    print(f"\npictures written to {out}/")


if __name__ == "__main__":
    main()
