"""``pyro-vaes report RUN``: a run's pictures and posterior predictive checks on one HTML page.

The page (``RUN/report/index.html``, images beside it) opens with the run's settings (variant,
objective, data, latent size, epochs, ...) and test scores, then shows the loss curves; for image
data, samples, reconstructions, latent traversals and interpolations (geodesic on a curved latent
space), their rows and columns labelled; a 2-D scatter of the test codes coloured by label; the
posterior predictive checks (``az.plot_ppc`` of test statistics chosen for the data type, their
p-values, pixel calibration for binary data, the class check with its classifier's accuracy) and
a one-row-per-latent-site ``az.summary``. The InferenceData is saved beside it as
``predictive.nc``, the per-datapoint p-values as ``pvalues.csv``. The content is centred, its
figures in a grid that fills the width.

Everything is checked before the report's folder is created: the run folder, its
``config.json``, ``metrics.json`` (a damaged one is named) and checkpoint, the data, and the
folder itself, which must be new, empty, or an earlier report (never a run folder, never a
folder of other files). The report holds the folder's lock (``run.lock``) while it writes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import torch

from pyro_vaes.analysis import checks, plots
from pyro_vaes.analysis.classifier import accuracy, train_classifier
from pyro_vaes.analysis.predictive import posterior_predictive
from pyro_vaes.app import runs
from pyro_vaes.app.runs import RunFolderError, load_run, prepare_data
from pyro_vaes.catalogue import variants
from pyro_vaes.data import Splits, batches
from pyro_vaes.distributions import geometry
from pyro_vaes.protocols import Labelled
from pyro_vaes.train.callbacks import History

__all__ = [
    "RELIABLE_ACCURACY",
    "REPORT_FILES",
    "check_report_folder",
    "latent_summary",
    "run_settings",
    "write_report",
]

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
    "pvalues.csv",
)
#: below this test accuracy the class check is marked unreliable
RELIABLE_ACCURACY = 0.95
_GENERATOR = '<meta name="generator" content="pyro-vaes report">'

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="pyro-vaes report">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 0; color: #222; background: #fff; }}
main {{ max-width: 1200px; margin: 0 auto; padding: 1.5em 2em 3em; }}
.figures {{ display: flex; flex-wrap: wrap; justify-content: center; align-items: flex-start;
  gap: 1.5em 2em; }}
figure {{ margin: 0; text-align: center; flex: 1 1 440px; min-width: 0; }}
figure.wide {{ flex-basis: 100%; }}
figcaption {{ font-size: 0.9em; color: #444; margin-top: 0.3em; }}
img {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
table.settings th, table.settings td {{ text-align: left; }}
table.settings th {{ background: #f4f4f4; font-weight: normal; color: #555; }}
p.warning {{ background: #fff4e0; border-left: 4px solid #e69500; padding: 0.4em 0.8em; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
<script>
// read by the headless-browser check: how many images rendered, which did not, and the
// page's full height (for a screenshot of all of it)
window.addEventListener("load", () => {{
  const images = Array.from(document.images);
  const broken = images.filter((i) => !(i.complete && i.naturalWidth > 0));
  const data = document.body.dataset;
  data.imagesLoaded = (images.length - broken.length) + "/" + images.length;
  data.imagesBroken = broken.map((i) => i.getAttribute("src")).join(" ");
  data.pageHeight = Math.ceil(Math.max(document.documentElement.scrollHeight,
                                        document.body.scrollHeight));
}});
</script>
</body>
</html>
"""


@dataclass
class _Page:
    """The page's body as it is built: headings, paragraphs, tables, and figures; consecutive
    figures share one centred, wrapping row (two side by side where the width allows, a figure
    alone in its row centred, ``wide`` ones a row each)."""

    out: Path
    parts: list[str]
    figures: list[str] = field(default_factory=list)

    def _flush(self) -> None:
        if self.figures:
            self.parts.append('<div class="figures">\n' + "\n".join(self.figures) + "\n</div>")
            self.figures = []

    def heading(self, text: str) -> None:
        self._flush()
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, warning: bool = False) -> None:
        self._flush()
        cls = ' class="warning"' if warning else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def figure(self, path: Path, caption: str, wide: bool = False) -> None:
        rel = path.relative_to(self.out).as_posix()
        cls = ' class="wide"' if wide else ""
        self.figures.append(
            f'<figure{cls}><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def table(self, frame: pd.DataFrame, **kwargs: Any) -> None:
        self._flush()
        self.parts.append(frame.to_html(float_format=lambda v: f"{v:.3f}", **kwargs))

    def settings(self, rows: list[tuple[str, str]]) -> None:
        self._flush()
        cells = "\n".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
        )
        self.parts.append(f'<table class="settings" id="settings">\n{cells}\n</table>')

    def html(self) -> str:
        self._flush()
        return "\n".join(self.parts)


def _objective(variant: variants.Variant) -> str:
    """The variant's objective by class name and its non-default constants."""
    loss = variant.loss()
    if loss is None:
        return "ELBO (fit's default: the KL in closed form where registered)"
    shown = []
    for name in ("num_particles", "alpha", "beta", "gamma"):
        value = getattr(loss, name, None)
        if isinstance(value, (int, float)) and not (name == "num_particles" and value == 1):
            shown.append(f"{name}={value:g}")
    return type(loss).__name__ + (f" ({', '.join(shown)})" if shown else "")


def run_settings(config: dict[str, Any], history: History | None) -> list[tuple[str, str]]:
    """The rows of the settings table at the top of the page: what was trained, on what, for
    how long, from the run's ``config.json`` (and its history: the epochs actually trained)."""
    name = str(config["variant"])
    options = dict(config.get("options") or {})
    variant = variants.registry.get(name)
    rows = [("variant", name + (f": {variant.summary}" if variant else ""))]
    if variant is not None:
        rows += [("reference", variant.reference), ("objective", _objective(variant))]
    latent = options.pop("latent_dim", None)
    rows.append(("latent dim", str(latent) if latent is not None else "the variant's default"))
    shape = "x".join(map(str, config.get("data_shape", ())))
    data = f"{config['data']} ({shape})" + (
        f" from {config['data_root']}" if config.get("data_root") else ""
    )
    rows.append(("data", f"{data}, binarisation {config['binarize']}"))
    if config.get("val_fraction"):
        rows.append(("validation", f"{config['val_fraction']:g} of the training data"))
    epochs = config.get("epochs")
    trained = len(history.epoch) if history is not None else None
    if epochs is not None or trained:
        what = f"{epochs}" if epochs is not None else "?"
        if trained is not None and trained != epochs:
            what += f" planned, {trained} trained"
        rows.append(("epochs", what))
    training = [f"{k.replace('_', ' ')} {config[k]}" for k in ("batch_size", "lr") if k in config]
    if training:
        rows.append(("optimisation", ", ".join(training)))
    if "seed" in config:
        rows.append(("seed", str(config["seed"])))
    if options:
        rows.append(("model options", ", ".join(f"{k}={v}" for k, v in sorted(options.items()))))
    return rows


def latent_summary(idata: az.InferenceData, active: float = 0.01) -> pd.DataFrame:
    r"""``az.summary``'s columns aggregated to one row per latent site, over every datapoint and
    dimension (``az.summary`` itself gives a row per datapoint and dimension: 48 rows for three
    datapoints of a 16-dimensional code, thousands for the whole test set).

    - ``dims``, ``datapoints``, ``draws``: the site's size and what was aggregated over;
    - ``active dims``: dimensions whose posterior mean varies across datapoints,
      :math:`\operatorname{Var}_x \mathbb{E}_{q(z|x)}[z_j] > 0.01` (Burda et al. 2016): the
      others are unused (posterior collapse);
    - ``mean range``: the smallest and largest posterior mean;
    - ``mean sd``, ``mean hdi width``: the typical posterior spread (``sd`` and the 94% HDI of
      ``az.summary``, averaged);
    - ``min ess_bulk`` / ``mean ess_bulk``: the draws are independent draws of the guide, so
      these should be close to ``draws``; a low value flags a site whose draws are not;
    - ``max r_hat``: only with several chains (one chain has none to compare).
    """
    rows = {}
    post = idata["posterior"]
    for site in map(str, post.data_vars):
        values = post[site]
        if values.ndim == 3:  # (chain, draw, datapoint): a scalar site
            values = values.expand_dims(f"{site}_dim", axis=-1)
        arr = values.values.astype(float)  # (chain, draw, N, d)
        means = arr.mean((0, 1))
        chains, draws, n, d = arr.shape
        hdi = az.hdi(values, hdi_prob=0.94)[site].values  # (N, d, 2)
        ess = az.ess(post[[site]], method="bulk")[site].values
        row: dict[str, Any] = {
            "dims": d,
            "datapoints": n,
            "draws": chains * draws,
            "active dims": int((means.var(0) > active).sum()),
            "mean range": f"{means.min():.2f} to {means.max():.2f}",
            "mean sd": float(arr.std((0, 1), ddof=1).mean()) if draws > 1 else float("nan"),
            "mean hdi width": float((hdi[..., 1] - hdi[..., 0]).mean()),
            "min ess_bulk": float(np.nanmin(ess)),
            "mean ess_bulk": float(np.nanmean(ess)),
        }
        if chains > 1:
            row["max r_hat"] = float(np.nanmax(az.rhat(post[[site]])[site].values))
        rows[f"latent {site!r}"] = row
    return pd.DataFrame.from_dict(rows, orient="index")


@torch.no_grad()
def _codes(model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The codes of ``x`` (given the labels ``y`` for a :class:`Labelled` model)."""
    if isinstance(model, Labelled):
        return torch.cat(
            [model.encode(a, b) for a, b in zip(batches(x, 500), batches(y, 500), strict=True)]
        )
    return torch.cat([model.encode(b) for b in batches(x, 500)])


def _label_samples(model: Labelled, page: _Page, per_label: int = 10) -> None:
    """A grid with one row per label: ``per_label`` samples of each."""
    k = model.num_classes
    labels = torch.arange(k).repeat_interleave(per_label)
    page.figure(
        plots.save_image_grid(
            model.sample(len(labels), labels),
            page.out / "samples_by_label.png",
            ncol=per_label,
            row_labels=[f"y={j}" for j in range(k)],
            ylabel="label",
        ),
        f"{per_label} samples of each label (row y=k: decoded draws given the label k)",
        wide=True,
    )


def _image_pictures(model: Any, splits: Splits, page: _Page) -> None:
    out, x = page.out, splits.x_test
    geo = model.geometry
    labelled = isinstance(model, Labelled)
    page.heading("Samples and reconstructions")
    if labelled:
        _label_samples(model, page)
    else:
        page.figure(
            plots.save_image_grid(model.sample(64), out / "samples.png"), "samples from p(z)"
        )
    rec = model.reconstruct(x[:16], splits.y_test[:16]) if labelled else model.reconstruct(x[:16])
    both = torch.cat([x[:16], rec])
    page.figure(
        plots.save_image_grid(
            both,
            out / "reconstructions.png",
            ncol=8,
            row_labels=["test", "test", "recon.", "recon."],
        ),
        "16 test images (top two rows) and their reconstructions (bottom two rows)",
    )
    z = _codes(model, x[:8], splits.y_test[:8])
    dims = min(z.shape[1], 10)
    values = torch.linspace(-2.5, 2.5, 9)
    walk = geometry.traverse(geo, z[0], values)[:dims]  # (dims, 9, d)
    page.heading("Latent traversals and interpolations")
    codes = walk.reshape(-1, z.shape[1])
    page.figure(
        plots.save_image_grid(
            model.decode(codes, splits.y_test[0].expand(len(codes)))  # the image's label
            if labelled
            else model.decode(codes),
            out / "traversals.png",
            ncol=9,
            row_labels=[f"z[{j}]" for j in range(dims)],
            col_labels=[f"{v:+.2g}" for v in values.tolist()],
            xlabel="step t along the dimension",
            ylabel="latent dimension",
        ),
        f"traversals from a test image's code z: row j decodes exp_z(t e_j), one row per latent "
        f"dimension (first {dims}), t from {values[0]:.1f} to {values[-1]:.1f} "
        f"({geo.name} geometry)",
    )
    steps = torch.linspace(0.0, 1.0, 10)
    path = torch.cat([geometry.interpolate(geo, z[2 * i], z[2 * i + 1], 10) for i in range(4)])
    pairs = splits.y_test[:8:2].repeat_interleave(10)  # conditional: the first image's label
    page.figure(
        plots.save_image_grid(
            model.decode(path, pairs) if labelled else model.decode(path),
            out / "interpolations.png",
            ncol=10,
            row_labels=[f"pair {i + 1}" for i in range(4)],
            col_labels=[f"{t:.2f}".rstrip("0").rstrip(".") for t in steps.tolist()],
            xlabel="t (0: the first code, 1: the second)",
        ),
        f"interpolations between pairs of test codes along {geo.name} geodesics",
    )


def _class_check(
    splits: Splits, transform: Any, epochs: int, progress: bool
) -> tuple[checks.Statistic, float]:
    """The class statistic of a classifier trained on the run's training images, prepared as
    the model saw them (``transform``: the run's dynamic binarisation), and its accuracy on the
    run's test images (prepared as the checks' observed data)."""
    clf = train_classifier(
        splits.x_train, splits.y_train, epochs=epochs, transform=transform, progress=progress
    )
    return checks.class_statistic(clf), accuracy(clf, splits.x_test, splits.y_test)


def _checks(
    model: Any,
    splits: Splits,
    transform: Any,
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
        plots.latent_scatter(_codes(model, x, y), y, out / "latent.png", "test codes by label"),
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
    idata.to_netcdf(str(out / "predictive.nc"))
    image = len(splits.shape) == 3
    binary = bool(np.isin(idata["observed_data"]["x"].values, (0.0, 1.0)).all())
    if image:
        stats = checks.image_statistics(binary=binary)
    else:
        stats = {"mean": lambda v: v.mean(-1), "std": lambda v: v.std(-1)}
    notes, unreliable = [], None
    if image and classifier_epochs > 0 and int(splits.y_train.max()) >= 1:
        stats["predicted_class"], acc = _class_check(splits, transform, classifier_epochs, progress)
        notes.append(f"the class check's classifier labels {acc:.3f} of the test images right")
        if acc < RELIABLE_ACCURACY:
            unreliable = (
                f"The class check (predicted_class) is unreliable: its classifier labels only "
                f"{acc:.1%} of the test images right (below {RELIABLE_ACCURACY:.0%}), so a "
                "difference in class frequencies may be the classifier's error, not the model's. "
                "More --classifier-epochs may help; binarised small images are ambiguous."
            )
    kind = "binary images" if image and binary else "images" if image else "vectors"
    page.text(
        f"{num_samples} posterior draws for each of {len(x)} test datapoints; test statistics "
        f"({', '.join(stats)}, chosen for {kind}: see pyro_vaes.analysis.checks) of replicated "
        f"against observed data{'; ' if notes else ''}{'; '.join(notes)}."
    )
    if unreliable:
        page.text(unreliable, warning=True)
    stat_idata = checks.statistics(idata, stats)
    page.figure(
        plots.ppc_plot(stat_idata, out / "ppc.png"), "az.plot_ppc of test statistics", wide=True
    )
    pv = checks.pvalues(stat_idata)
    pd.DataFrame(pv).rename_axis("datapoint").to_csv(out / "pvalues.csv")
    shown = {
        (f"{k} (unreliable)" if k == "predicted_class" and unreliable else k): v
        for k, v in pv.items()
    }
    page.figure(
        plots.pvalue_plot(shown, out / "pvalues.png"),
        "posterior predictive p-values per datapoint (piled at 0 or 1: misfit)",
        wide=True,
    )
    if binary:
        cal = checks.calibration(idata)
        page.figure(plots.calibration_plot(cal, out / "calibration.png"), "pixel calibration")
    page.text(
        "az.summary of every latent site, one row each, aggregated over the test datapoints "
        "and the site's dimensions (see pyro_vaes.app.report.latent_summary):"
    )
    page.table(latent_summary(idata))


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
    splits, transform = prepare_data(config)
    with runs.open_folder(target) as lock:
        check_report_folder(target, lock, inside_run=inside)  # again, now that it is ours
        page = _Page(target, [])
        torch.manual_seed(seed)
        test, history = metrics if metrics is not None else (None, None)
        page.settings(run_settings(config, history))
        if test:
            page.text(
                f"test log-likelihood {test['log_likelihood']:.2f} nats (IWAE, "
                f"k={test['num_samples']}), ELBO {test['elbo']:.2f}, reconstruction error "
                f"{test['reconstruction']:.2f}"
            )
        if history is not None and len(history):
            page.heading("Training")
            page.figure(plots.loss_curve(history, target / "loss.png"), "loss per epoch")
        if len(splits.shape) == 3:
            _image_pictures(model, splits, page)
        _checks(
            model, splits, transform, page, num_samples, num_points, classifier_epochs, progress
        )
        title = f"{config['variant']} on {config['data']}"
        index = target / "index.html"
        index.write_text(_PAGE.format(title=html.escape(title), body=page.html()))
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
