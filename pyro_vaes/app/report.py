"""``pyro-vaes report RUN``: a run's pictures and posterior predictive checks on one HTML page.

The page (``RUN/report/index.html``, images beside it) shows the loss curves; for image data,
samples, reconstructions, latent traversals and interpolations (geodesic on a curved latent
space); a 2-D scatter of the test codes coloured by label; the posterior predictive checks
(``az.plot_ppc`` of test statistics, their p-values, pixel calibration for binary data) and
``az.summary`` of a few datapoints' latents. The InferenceData is saved beside it as
``predictive.nc``.

Everything is checked before the report's folder is created: the run folder, its
``config.json``, ``metrics.json`` (a damaged one is named) and checkpoint, the data, and the
folder itself, which must be new, empty, or an earlier report (never a run folder, never a
folder of other files). The report holds the folder's lock (``run.lock``) while it writes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import torch

from pyro_vaes.analysis import checks, plots
from pyro_vaes.analysis.classifier import accuracy, train_classifier
from pyro_vaes.analysis.predictive import posterior_predictive
from pyro_vaes.app import runs
from pyro_vaes.app.runs import RunFolderError, load_run, prepare_data
from pyro_vaes.data import Splits, batches
from pyro_vaes.distributions import geometry

__all__ = ["REPORT_FILES", "check_report_folder", "write_report"]

#: the files a report writes
REPORT_FILES = (
    "index.html",
    "loss.png",
    "samples.png",
    "reconstructions.png",
    "traversals.png",
    "interpolations.png",
    "latent.png",
    "ppc.png",
    "pvalues.png",
    "calibration.png",
    "predictive.nc",
)
_GENERATOR = '<meta name="generator" content="pyro-vaes report">'

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="pyro-vaes report">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
figure {{ display: inline-block; margin: 1em; vertical-align: top; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
<script>
// how many images rendered, read by the headless-browser check
window.addEventListener("load", () => {{
  const images = Array.from(document.images);
  const ok = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = ok + "/" + images.length;
}});
</script>
</body>
</html>
"""


@dataclass
class _Page:
    out: Path
    parts: list[str]

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def figure(self, path: Path, caption: str) -> None:
        rel = path.relative_to(self.out).as_posix()
        self.parts.append(
            f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def table(self, frame: Any) -> None:
        self.parts.append(frame.to_html(float_format=lambda v: f"{v:.3f}"))


@torch.no_grad()
def _codes(model: Any, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.encode(b) for b in batches(x, 500)])


def _image_pictures(model: Any, splits: Splits, page: _Page) -> None:
    out, x = page.out, splits.x_test
    geo = model.geometry
    page.heading("Samples and reconstructions")
    page.figure(plots.save_image_grid(model.sample(64), out / "samples.png"), "samples from p(z)")
    both = torch.cat([x[:16], model.reconstruct(x[:16])])
    page.figure(
        plots.save_image_grid(both, out / "reconstructions.png", ncol=16),
        "test images (top) and their reconstructions",
    )
    z = _codes(model, x[:8])
    dims = min(z.shape[1], 10)
    values = torch.linspace(-2.5, 2.5, 9)
    walk = geometry.traverse(geo, z[0], values)[:dims]  # (dims, 9, d)
    page.heading("Latent traversals and interpolations")
    page.figure(
        plots.save_image_grid(
            model.decode(walk.reshape(-1, z.shape[1])), out / "traversals.png", ncol=9
        ),
        f"traversals from a test image's code: one row per latent dimension (first {dims}), "
        f"moving {values[0]:.1f} to {values[-1]:.1f} along it ({geo.name} geometry)",
    )
    path = torch.cat([geometry.interpolate(geo, z[2 * i], z[2 * i + 1], 10) for i in range(4)])
    page.figure(
        plots.save_image_grid(model.decode(path), out / "interpolations.png", ncol=10),
        f"interpolations between pairs of test codes along {geo.name} geodesics",
    )


def _checks(
    model: Any,
    splits: Splits,
    page: _Page,
    num_samples: int,
    num_points: int,
    classifier_epochs: int,
    progress: bool,
) -> None:
    out = page.out
    x, y = splits.x_test[:num_points], splits.y_test[:num_points]
    page.heading("Latent codes")
    page.figure(
        plots.latent_scatter(_codes(model, x), y, out / "latent.png", "test codes by label"),
        "posterior mean codes of the test data",
    )
    page.heading("Posterior predictive checks")
    try:
        idata = posterior_predictive(
            model.model, model.guide, (x, y), num_samples, progress=progress
        )
    except ValueError as err:  # e.g. a model whose data term is a factor, not a likelihood
        page.text(f"not available for this model: {err}")
        return
    for latent in map(str, idata["posterior"].data_vars):
        dim = f"{latent}_dim"
        shown = {"datapoint": [0, 1, 2], dim: list(range(min(idata["posterior"].sizes[dim], 4)))}
        page.text(
            f"az.summary of the latent {latent!r} (first {len(shown[dim])} dims) of the first "
            "three test datapoints:"
        )
        page.table(az.summary(idata, var_names=[latent], coords=shown, kind="stats"))
    idata.to_netcdf(str(out / "predictive.nc"))
    image = len(splits.shape) == 3
    if image:
        stats = checks.image_statistics()
    else:
        stats = {"mean": lambda v: v.mean(-1), "std": lambda v: v.std(-1)}
    notes = []
    if image and classifier_epochs > 0 and int(splits.y_train.max()) >= 1:
        clf = train_classifier(
            splits.x_train, splits.y_train, epochs=classifier_epochs, progress=progress
        )
        stats["predicted_class"] = checks.class_statistic(clf)
        notes.append(f"classifier test accuracy {accuracy(clf, splits.x_test, splits.y_test):.3f}")
    stat_idata = checks.statistics(idata, stats)
    page.text(
        f"{num_samples} posterior draws for each of {len(x)} test datapoints; test statistics of "
        f"replicated against observed data. {'; '.join(notes)}"
    )
    page.figure(plots.ppc_plot(stat_idata, out / "ppc.png"), "az.plot_ppc of test statistics")
    pv = checks.pvalues(stat_idata)
    page.figure(
        plots.pvalue_plot(pv, out / "pvalues.png"),
        "posterior predictive p-values per datapoint (piled at 0 or 1: misfit)",
    )
    binary = bool(np.isin(idata["observed_data"]["x"].values, (0.0, 1.0)).all())
    if binary:
        cal = checks.calibration(idata)
        page.figure(plots.calibration_plot(cal, out / "calibration.png"), "pixel calibration")


def write_report(
    run: str | Path,
    *,
    out: str | Path | None = None,
    num_samples: int = 100,
    num_points: int = 300,
    classifier_epochs: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Write the report of the run folder ``run``; returns the path of ``index.html``.

    :param out: the folder for the page and its images (default ``RUN/report``).
    :param num_samples: posterior draws per datapoint for the checks.
    :param num_points: test datapoints the checks use.
    :param classifier_epochs: epochs of the classifier behind the class-frequency check (0: none).
    :param progress: progress bars for the classifier and the posterior draws.
    """
    if num_samples < 1 or num_points < 1 or classifier_epochs < 0:
        raise ValueError("need num_samples >= 1, num_points >= 1 and classifier_epochs >= 0")
    run = Path(run)
    config, model = load_run(run)
    model = model.cpu()
    metrics = runs.read_metrics(run)
    target = Path(out) if out is not None else run / "report"
    inside = out is None
    check_report_folder(target, inside_run=inside)
    splits, _ = prepare_data(config)
    with runs.open_folder(target) as lock:
        check_report_folder(target, lock, inside_run=inside)  # again, now that it is ours
        page = _Page(target, [])
        torch.manual_seed(seed)
        if metrics is not None:
            test, history = metrics
            if test:
                page.text(
                    f"test log-likelihood {test['log_likelihood']:.2f} nats (IWAE, "
                    f"k={test['num_samples']}), ELBO {test['elbo']:.2f}, reconstruction error "
                    f"{test['reconstruction']:.2f}"
                )
            if len(history):
                page.heading("Training")
                page.figure(plots.loss_curve(history, target / "loss.png"), "loss per epoch")
        if len(splits.shape) == 3:
            _image_pictures(model, splits, page)
        _checks(model, splits, page, num_samples, num_points, classifier_epochs, progress)
        title = f"{config['variant']} on {config['data']}"
        index = target / "index.html"
        index.write_text(_PAGE.format(title=html.escape(title), body="\n".join(page.parts)))
    return index


def check_report_folder(
    target: Path, lock: runs.RunLock | None = None, *, inside_run: bool = False
) -> None:
    """Check that a report may be written into ``target``: new, empty, or an earlier report
    (its ``index.html`` says so; for the run's own ``RUN/report``, ``inside_run``, also a
    folder of report files only, as earlier versions wrote). Reads only. ``lock``: this
    process's own lock on ``target``, if held.

    :raises RunFolderError: naming the folder, if it is a file, a run folder, or a folder of
        other files.
    """
    folder = runs.Folder.inspect(target)
    if folder.kind == "file":
        raise RunFolderError(f"report folder {target} is a file, not a folder")
    if folder.kind == "missing":
        runs.check_parent(target)
        return
    holder = (lock or runs.RunLock(target)).holder()
    if holder is not None:
        raise RunFolderError(runs.RunLock.held_message(target, holder))
    if folder.kind == "run":
        raise RunFolderError(
            f"{target} is a run folder; a report there would replace the run's pictures: "
            "choose another --out"
        )
    if folder.kind == "empty" or _is_report(target, folder.entries, inside_run):
        return
    raise RunFolderError(
        f"report folder {target} is not empty and holds no pyro-vaes report "
        f"({folder.describe()}); its files are left alone: choose a new or empty --out"
    )


def _is_report(target: Path, entries: tuple[str, ...], inside_run: bool) -> bool:
    if inside_run and set(entries) <= set(REPORT_FILES):
        return True
    try:
        with open(target / "index.html", encoding="utf-8", errors="replace") as f:
            return _GENERATOR in f.read(2000)
    except OSError:
        return False
