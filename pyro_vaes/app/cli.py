"""The ``pyro-vaes`` command: ``train``, ``evaluate``, ``sample``, ``report`` and ``list``.

A run folder holds ``config.json`` (what to build: variant, options, data), ``checkpoint.pt``
(parameters only; loading it runs no code), ``metrics.json`` and PNG pictures.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pyro_vaes import data
from pyro_vaes.analysis import evaluate, plots
from pyro_vaes.app.report import write_report
from pyro_vaes.app.runs import BINARIZE, CONFIG, METRICS, load_run, prepare_data
from pyro_vaes.catalogue import variants
from pyro_vaes.errors import CheckpointError, DataError
from pyro_vaes.train.fit import resolve_device


def _pictures(model: Any, splits: data.Splits, out: Path, n: int = 64) -> None:
    if len(splits.shape) != 3:  # sample grids and reconstructions are for images (C, H, W)
        return
    torch.manual_seed(0)
    plots.save_image_grid(model.sample(n), out / "samples.png", "samples from the prior")
    x = splits.x_test[:32]
    both = torch.cat([x, model.reconstruct(x)])
    plots.save_image_grid(
        both, out / "reconstructions.png", "test images (top), reconstructions", 16
    )


def cmd_list(args: argparse.Namespace) -> int:
    width = max(len(name) for name in variants.registry)
    for name, v in sorted(variants.registry.items()):
        print(f"{name:<{width}}  {v.summary}  [{v.reference}]")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "latent_dim": args.latent_dim,
        "net": args.net,
        "likelihood": args.likelihood,
        "hidden": args.hidden,
    }
    for key in ("beta", "prior", "posterior", "flow_steps", "components", "curvature"):
        if getattr(args, key) is not None:  # unset: the variant's default
            options[key] = getattr(args, key)
    binarize = args.binarize or ("dynamic" if args.likelihood == "bernoulli" else "none")
    out = Path(args.out or f"runs/{args.variant}-{args.data}")
    config = {
        "variant": args.variant,
        "options": options,
        "data": args.data,
        "data_root": args.data_root,
        "binarize": binarize,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
    }
    if args.variant not in variants.registry:
        raise ValueError(f"unknown variant {args.variant!r}; see `pyro-vaes list`")
    resolve_device(args.device)
    splits, transform = prepare_data(config)
    config["data_shape"] = list(splits.shape)
    torch.manual_seed(args.seed)
    model: Any = variants.build(args.variant, splits.shape, **options)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    history = variants.registry[args.variant].fit(
        model,
        (splits.x_train, splits.y_train),  # labels reach models that take y
        optim=functools.partial(torch.optim.Adam, lr=args.lr),
        epochs=args.epochs,
        batch_size=args.batch_size,
        device=args.device,
        val_data=(splits.x_test, splits.y_test),
        transform=transform,
        checkpoint_dir=out,
        resume=args.resume,
        seed=args.seed,
        progress=not args.quiet,
    )
    model.eval()
    test = (splits.x_test, splits.y_test)
    s = evaluate.scores(model.model, model.guide, test, args.eval_samples, progress=not args.quiet)
    metrics = {
        "history": history.to_dict(),
        "test": {
            "num_samples": args.eval_samples,
            "log_likelihood": float(s.log_likelihood.mean()),
            "elbo": float(s.elbo.mean()),
            "reconstruction": float(s.reconstruction.mean()),
        },
    }
    (out / METRICS).write_text(json.dumps(metrics, indent=2))
    plots.loss_curve(history, out / "loss.png")
    _pictures(model.cpu(), splits, out)
    print(
        f"test log-likelihood {metrics['test']['log_likelihood']:.2f} nats "
        f"(IWAE, k={args.eval_samples}); run written to {out}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    config, model = load_run(Path(args.run))
    if args.data_root:
        config["data_root"] = args.data_root
    splits, _ = prepare_data(config)
    test = (splits.x_test, splits.y_test)
    s = evaluate.scores(model.model, model.guide, test, args.num_samples, progress=not args.quiet)
    result = {
        "num_samples": args.num_samples,
        "log_likelihood": float(s.log_likelihood.mean()),
        "elbo": float(s.elbo.mean()),
        "reconstruction": float(s.reconstruction.mean()),
    }
    print(json.dumps(result, indent=2))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    _, model = load_run(Path(args.run))
    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    torch.manual_seed(args.seed)
    path = Path(args.out or Path(args.run) / "samples.png")
    plots.save_image_grid(model.sample(args.n), path, f"{args.n} samples")
    print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    index = write_report(
        args.run,
        out=args.out,
        num_samples=args.num_samples,
        num_points=args.num_points,
        classifier_epochs=args.classifier_epochs,
        progress=not args.quiet,
    )
    print(f"wrote {index}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyro-vaes", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fit a variant and write a run folder")
    t.add_argument("--variant", default="vae", help="see `pyro-vaes list` (default: vae)")
    t.add_argument("--data", default="digits", choices=sorted(data.registry))
    t.add_argument("--data-root", default=None, help="folder with the dataset files")
    t.add_argument("--epochs", type=_non_negative_int, default=30)
    t.add_argument("--batch-size", type=_positive_int, default=100)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--latent-dim", type=_positive_int, default=16)
    t.add_argument("--hidden", type=_positive_int, nargs="+", default=[512])
    t.add_argument("--net", choices=["mlp", "conv"], default="mlp")
    t.add_argument("--likelihood", choices=["bernoulli", "gaussian"], default="bernoulli")
    t.add_argument("--beta", type=float, default=None, help="KL weight (beta_vae default: 4)")
    t.add_argument("--prior", choices=sorted(variants.priors), default=None)
    t.add_argument("--posterior", choices=sorted(variants.posteriors), default=None)
    t.add_argument("--flow-steps", type=_positive_int, default=None)
    t.add_argument("--curvature", type=float, default=None, help="c of the Poincare ball")
    t.add_argument(
        "--components",
        type=_positive_int,
        default=None,
        help="mixture components or VampPrior pseudo-inputs",
    )
    t.add_argument(
        "--binarize",
        choices=sorted(BINARIZE),
        default=None,
        help="default: dynamic for the Bernoulli likelihood, none otherwise",
    )
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-samples", type=_positive_int, default=500)
    t.add_argument("--out", default=None, help="run folder (default: runs/VARIANT-DATA)")
    t.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="importance-sampled test log-likelihood of a run")
    e.add_argument("run")
    e.add_argument("--num-samples", type=_positive_int, default=5000)
    e.add_argument("--data-root", default=None)
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sample", help="write a grid of samples from a run")
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None)
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("report", help="pictures and posterior predictive checks as an HTML page")
    r.add_argument("run")
    r.add_argument("--out", default=None, help="default: RUN/report")
    r.add_argument("--num-samples", type=_positive_int, default=100, help="draws per datapoint")
    r.add_argument("--num-points", type=_positive_int, default=300, help="test datapoints")
    r.add_argument("--classifier-epochs", type=_non_negative_int, default=5)
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_report)

    ls = sub.add_parser("list", help="the catalogue of variants")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, RuntimeError, CheckpointError, DataError) as err:
        print(f"pyro-vaes: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
