"""Data-parallel fit on torch.distributed: 2 CPU processes on gloo, started by the tests.

Each test spawns its workers (``multiprocessing`` spawn: fresh interpreters), which meet on a free
local port and write what they found to files the test then compares.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn
from torch.distributions import constraints

import pyro_vaes as pv
import pyro_vaes.app.cli
import pyro_vaes.app.runs
from pyro_vaes.train.callbacks import Callback
from pyro_vaes.train.distributed import Distributed, DistributedError, shard_bounds

D, K = 6, 2


class AE(nn.Module):
    """A deterministic autoencoder as a Pyro pair (Delta guide), with a ``pyro.param`` in the
    parameter store: its gradients involve no noise, so data parallelism can be checked
    exactly against one process."""

    def __init__(self, stochastic: bool = False) -> None:
        super().__init__()
        self.enc = nn.Linear(D, 2 * K)
        self.dec = nn.Linear(K, D)
        self.stochastic = stochastic

    def model(self, x: torch.Tensor) -> None:
        scale = pyro.param("noise_scale", torch.ones(D), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
            pyro.sample("x", dist.Normal(self.dec(z), scale).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        loc, log_scale = self.enc(x).split(K, dim=-1)
        with pyro.plate("data", x.shape[0]):
            q = (
                dist.Normal(loc, log_scale.exp()).to_event(1)
                if self.stochastic
                else dist.Delta(loc).to_event(1)
            )
            pyro.sample("z", q)


def _data(n: int = 49) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(1))


def _state(ae: AE) -> dict[str, torch.Tensor]:
    out = {k: v.detach().clone() for k, v in ae.state_dict().items()}
    out["noise_scale"] = pyro.param("noise_scale").detach().clone()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _DieAt(Callback):
    def __init__(self, step: int) -> None:
        self.at = step

    def on_step_start(self, state: Any) -> None:
        if state.global_step == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


def _worker(rank: int, world: int, port: int, job: str, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    folder = Path(out)
    try:
        result = _JOBS[job](rank, folder)
        torch.save(result, folder / f"rank{rank}.pt")
    except BaseException as err:  # reported to the test, which asserts on it
        (folder / f"rank{rank}.error").write_text(
            f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
        )


def _job_equal(rank: int, folder: Path) -> dict[str, Any]:
    pyro.clear_param_store()
    torch.manual_seed(10 + rank)  # different initial values: rank 0's are broadcast
    ae = AE()
    history = pv.fit(
        ae.model, ae.guide, _data(), epochs=2, batch_size=4, seed=3, progress=False, device="cpu"
    )
    out = {"params": _state(ae), "history": history.to_dict()}
    # an adversarial objective: each rank draws its own prior samples for the critic, so the
    # critic's gradients differ by rank and only their average keeps the ranks in step
    pyro.clear_param_store()
    torch.manual_seed(20 + rank)
    ae, loss = AE(), pv.objectives.AdversarialAE(K, hidden=(8,))
    pv.fit(ae.model, ae.guide, _data(), loss=loss, epochs=1, batch_size=4, seed=4, progress=False)
    out["adversary"] = {k: v.detach().clone() for k, v in loss.adversary.state_dict().items()}
    out["adversary_model"] = _state(ae)
    # sharded scoring, gathered on every rank (Delta guide: no noise in the weights)
    pyro.clear_param_store()
    torch.manual_seed(0)
    ae = AE()
    x = _data(9)
    out["scores"] = pv.evaluate.scores(ae.model, ae.guide, x, 3, batch_size=2, progress=False)
    idata = pv.posterior_predictive(ae.model, ae.guide, x, 4, batch_size=2, progress=False)
    out["log_weight"] = torch.from_numpy(idata["sample_stats"]["log_weight"].values.copy())
    out["z"] = torch.from_numpy(idata["posterior"]["z"].values.copy())
    return out


def _job_resume(rank: int, folder: Path) -> dict[str, Any]:
    warnings.simplefilter("ignore")  # resume=True without a checkpoint yet
    out = {}
    for name, runs in (("straight", [3]), ("resumed", [1, 3])):
        for i, epochs in enumerate(runs):
            pyro.clear_param_store()
            torch.manual_seed(100 + 7 * i)  # the resumed fit starts elsewhere: restored
            ae = AE(stochastic=True)
            pv.fit(
                ae.model,
                ae.guide,
                _data(),
                val_data=_data(9),
                epochs=epochs,
                batch_size=4,
                seed=5,
                progress=False,
                device="cpu",
                checkpoint_dir=folder / name,
                resume=True,
                distributed=Distributed(timeout=60),
            )
        out[name] = _state(ae)
    return out


def _job_die(rank: int, folder: Path) -> dict[str, Any]:
    ae = AE()
    began = time.monotonic()
    try:
        pv.fit(
            ae.model,
            ae.guide,
            _data(4000),
            epochs=50,
            batch_size=4,
            seed=0,
            progress=False,
            device="cpu",
            callbacks=[_DieAt(30)] if rank == 1 else [],
            distributed=Distributed(timeout=20),
        )
    except DistributedError as err:
        return {"error": str(err), "seconds": time.monotonic() - began}
    return {"error": None, "seconds": time.monotonic() - began}


_JOBS = {"equal": _job_equal, "resume": _job_resume, "die": _job_die}


def _launch(job: str, folder: Path, world: int = 2, timeout: float = 90) -> list[Any]:
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, world, port, job, str(folder))) for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail(f"a worker of {job!r} did not finish within {timeout} s")
    results = []
    for r in range(world):
        error = folder / f"rank{r}.error"
        if error.exists():
            pytest.fail(f"rank {r} failed: {error.read_text()}")
        path = folder / f"rank{r}.pt"
        results.append(torch.load(path, weights_only=False) if path.exists() else None)
    return results


def test_shards_are_contiguous_disjoint_and_cover():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert [b[0] for b in bounds] == [0] + [b[1] for b in bounds[:-1]]
            assert bounds[-1][1] == n
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(tmp_path):
    # 49 datapoints, global batch 8: a ragged last batch of one row, so rank 1's shard of it is
    # empty; the parameter-store parameter and the module parameters are all averaged
    rank0, rank1 = _launch("equal", tmp_path)
    for k in rank0["params"]:
        assert torch.equal(rank0["params"][k], rank1["params"][k]), k
    assert rank0["history"]["loss"] == rank1["history"]["loss"]

    for part in ("adversary", "adversary_model"):
        for k in rank0[part]:
            assert torch.equal(rank0[part][k], rank1[part][k]), (part, k)

    # scoring: each rank scored its share, every rank holds all of it, as one process has it
    torch.manual_seed(0)
    ae = AE()
    x = _data(9)
    single_scores = pv.evaluate.scores(ae.model, ae.guide, x, 3, batch_size=2, progress=False)
    idata = pv.posterior_predictive(ae.model, ae.guide, x, 4, batch_size=2, progress=False)
    for rank in (rank0, rank1):
        for field in ("log_likelihood", "elbo", "reconstruction"):
            got, want = getattr(rank["scores"], field), getattr(single_scores, field)
            assert got.shape == (9,) and torch.allclose(got, want, rtol=1e-6, atol=1e-5), field
        assert rank["z"].shape == (1, 4, 9, K)
        want_w = torch.from_numpy(idata["sample_stats"]["log_weight"].values.copy())
        assert torch.allclose(rank["log_weight"], want_w, rtol=1e-6, atol=1e-5)
        assert torch.allclose(rank["z"], torch.from_numpy(idata["posterior"]["z"].values))

    pyro.clear_param_store()
    torch.manual_seed(10)
    ae = AE()
    history = pv.fit(
        ae.model, ae.guide, _data(), epochs=2, batch_size=8, seed=3, progress=False, device="cpu"
    )
    single = _state(ae)
    for k, v in single.items():
        assert torch.allclose(rank0["params"][k], v, rtol=0, atol=1e-6), (
            k,
            (rank0["params"][k] - v).abs().max(),
        )
    assert rank0["history"]["loss"] == pytest.approx(history.loss, rel=1e-6)
    # and the fit did move the parameters: the comparison is not of initial values
    torch.manual_seed(10)
    assert not torch.allclose(AE().dec.weight, single["dec.weight"], atol=1e-3)


def test_resumed_two_rank_run_is_bit_identical(tmp_path):
    rank0, rank1 = _launch("resume", tmp_path)
    for k in rank0["straight"]:
        assert torch.equal(rank0["straight"][k], rank0["resumed"][k]), k
        assert torch.equal(rank1["straight"][k], rank1["resumed"][k]), k
        assert torch.equal(rank0["straight"][k], rank1["straight"][k]), k
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 3 and len(saved["rng_ranks"]) == 2
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["checkpoint.pt"]


def test_a_killed_rank_stops_the_other_with_an_error_naming_it(tmp_path):
    began = time.monotonic()
    rank0, rank1 = _launch("die", tmp_path)
    assert rank1 is None  # killed
    assert rank0["error"] is not None, "rank 0 trained on without its peer"
    assert rank0["error"].startswith(
        "distributed training stopped on rank 0: rank(s) [1] of 2 stopped answering"
    ), rank0["error"]
    assert "averaging the gradients failed" in rank0["error"]
    assert rank0["seconds"] < 25 and time.monotonic() - began < 60


def _torchrun(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    command += [f"--master_port={_free_port()}", "-m", "pyro_vaes", *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


_TRAIN = ["train", "--data", "digits", "--batch-size", "50", "--hidden", "32"]
_TRAIN += ["--latent-dim", "2", "--eval-samples", "5", "--out", "run", "--quiet"]


def test_cli_under_torchrun_trains_and_evaluate_reads_its_run(tmp_path, capsys):
    done = _torchrun([*_TRAIN, "--epochs", "2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run written to run") == 1  # rank 0 alone reports
    run = tmp_path / "run"
    files = sorted(p.name for p in run.iterdir())
    assert files == [
        "checkpoint.pt",
        "config.json",
        "loss.png",
        "metrics.json",
        "reconstructions.png",
        "samples.png",
    ]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"]["epoch"] == [1, 2]
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 2 and len(saved["rng_ranks"]) == 2
    # 50 images a rank: steps of 100 images
    config = json.loads((run / "config.json").read_text())
    n = len(pv.app.runs.prepare_data(config)[0].x_train)
    assert saved["global_step"] == 2 * -(-n // 100)

    assert pv.app.cli.main(["evaluate", str(run), "--num-samples", "5", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_samples"] == 5
    assert abs(result["log_likelihood"] - metrics["test"]["log_likelihood"]) < 2.0


def test_cli_under_torchrun_a_failed_check_on_rank_0_stops_every_rank(tmp_path):
    done = _torchrun([*_TRAIN, "--epochs", "2", "--resume"], tmp_path)
    assert done.returncode != 0
    assert "pyro-vaes: error: --resume: run holds no run to resume" in done.stderr
    assert (
        "pyro-vaes: error: rank 0 failed checking the run: RunFolderError: --resume: run holds "
        "no run to resume" in done.stderr
    )
    assert not (tmp_path / "run").exists()


def _job_cuda(rank: int, folder: Path) -> dict[str, Any]:
    pyro.clear_param_store()
    torch.manual_seed(10 + rank)
    ae = AE()
    world = int(os.environ["WORLD_SIZE"])
    history = pv.fit(
        ae.model,
        ae.guide,
        _data(),
        epochs=2,
        batch_size=8 // world,
        seed=3,
        progress=False,
        device="auto",  # the local rank's GPU
        distributed=Distributed(timeout=60),
    )
    assert next(ae.parameters()).device == torch.device("cuda", rank)
    assert torch.distributed.get_backend() == "nccl"
    return {"params": {k: v.cpu() for k, v in _state(ae).items()}, "loss": history.loss}


_JOBS["cuda"] = _job_cuda


@pytest.mark.cuda
def test_nccl_ranks_on_gpus_equal_one_process(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    world = min(torch.cuda.device_count(), 2)  # one GPU: a group of one rank on nccl
    results = _launch("cuda", tmp_path, world=world, timeout=180)
    pyro.clear_param_store()
    torch.manual_seed(10)
    ae = AE()
    history = pv.fit(
        ae.model, ae.guide, _data(), epochs=2, batch_size=8, seed=3, progress=False, device="cuda"
    )
    for k, v in _state(ae).items():
        for r in results:
            assert torch.allclose(r["params"][k], v.cpu(), rtol=0, atol=1e-5), k
    assert results[0]["loss"] == pytest.approx(history.loss, rel=1e-5)
