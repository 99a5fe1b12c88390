"""Inputs beyond x: labels reach a model(x, y) through fit, evaluate and posterior_predictive,
from (x, y) tensors, dicts, a TensorDataset and a DataLoader; unconditional models ignore them;
a model that requires y and gets none is refused before anything runs. And model/guide
mismatches are named before training."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pyro_vaes as pv
from pyro_vaes.data.batch import MISSING, accepting, as_batch
from pyro_vaes.models.base import BaseModel

D, K, C = 3, 2, 4
SIGMA = 0.5
W = torch.tensor([[1.0, 0.0], [0.5, 1.0], [0.0, -1.0]])
MEANS = torch.tensor([[-4.0, 0.0, 2.0], [4.0, 1.0, -2.0], [0.0, 5.0, 0.0], [0.0, -5.0, 3.0]])


class ConditionalLinearGaussian(BaseModel):
    """x = mu_y + W z + eps: log p(x | y) and p(z | x, y) are exact. The class means are
    learned; W and sigma are known."""

    def __init__(self) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.zeros(C, D))

    def model(self, x=None, y=None):
        self.register_with_pyro()
        if y is None:
            raise ValueError("this model needs labels y")
        with self.data_plate(x, y):
            z = pyro.sample("z", dist.Normal(torch.zeros(K), 1.0).to_event(1))
            loc = self.means[y] + z @ W.T
            pyro.sample("x", dist.Normal(loc, SIGMA).to_event(1), obs=x)

    def guide(self, x=None, y=None):
        self.register_with_pyro()
        prec = torch.eye(K) + W.T @ W / SIGMA**2
        cov = torch.linalg.inv(prec)
        mean = (x - self.means[y]) @ W @ cov.T / SIGMA**2
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(mean, cov))


def exact_log_px(x: torch.Tensor, y: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    cov = W @ W.T + SIGMA**2 * torch.eye(D)
    return dist.MultivariateNormal(means[y], cov).log_prob(x)


def draw(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(C, (n,), generator=gen)
    z = torch.randn(n, K, generator=gen)
    return MEANS[y] + z @ W.T + SIGMA * torch.randn(n, D, generator=gen), y


X, Y = draw(2000)


@pytest.mark.slow
@pytest.mark.parametrize(
    "form",
    ["pair", "dict", "tensor_dataset", "data_loader"],
)
def test_a_conditional_model_fits_from_every_form_of_labelled_data(form):
    data = {
        "pair": (X, Y),
        "dict": {"x": X, "y": Y},
        "tensor_dataset": TensorDataset(X, Y),
        "data_loader": DataLoader(TensorDataset(X, Y), batch_size=100, shuffle=True),
    }[form]
    m = ConditionalLinearGaussian()
    optim = pyro.optim.Adam({"lr": 0.1})
    pv.fit(m.model, m.guide, data, epochs=30, optim=optim, seed=0, progress=False)
    # the labels reached the model: each class mean goes to its maximum-likelihood value, the
    # class's sample mean (the guide is the exact posterior, so the ELBO is log p(x | y))
    sample_means = torch.stack([X[c == Y].mean(0) for c in range(C)])
    torch.testing.assert_close(m.means.detach(), sample_means, atol=0.15, rtol=0)


def test_evaluate_takes_labels_and_is_exact_with_the_exact_posterior():
    m = ConditionalLinearGaussian()
    with torch.no_grad():
        m.means.copy_(MEANS)
    x, y = X[:50], Y[:50]
    ll = pv.evaluate.log_likelihood(m.model, m.guide, (x, y), num_samples=20)
    torch.testing.assert_close(ll, exact_log_px(x, y, MEANS), atol=1e-4, rtol=0)
    # the labels matter: with every label shifted the data is far less likely
    wrong = pv.evaluate.log_likelihood(m.model, m.guide, {"x": x, "y": (y + 1) % C}, 20)
    assert float((ll - wrong).min()) > 10.0


def test_posterior_predictive_takes_labels():
    m = ConditionalLinearGaussian()
    with torch.no_grad():
        m.means.copy_(MEANS)
    x, y = X[:40], Y[:40]
    idata = pv.posterior_predictive(m.model, m.guide, TensorDataset(x, y), num_samples=200)
    assert idata["constant_data"]["y"].values.tolist() == y.tolist()
    rep = torch.from_numpy(idata["posterior_predictive"]["x"].values[0])  # (S, N, D)
    # replicated data centres on the class mean plus W E[z | x, y] (Monte Carlo error ~0.06)
    cov = torch.linalg.inv(torch.eye(K) + W.T @ W / SIGMA**2)
    z_mean = (x - MEANS[y]) @ W @ cov.T / SIGMA**2
    torch.testing.assert_close(rep.mean(0), MEANS[y] + z_mean @ W.T, atol=0.3, rtol=0)
    torch.testing.assert_close(
        torch.from_numpy(pv.predictive.log_marginal(idata)).float(),
        exact_log_px(x, y, MEANS),
        atol=1e-4,
        rtol=0,
    )


def test_a_model_that_requires_labels_is_refused_without_them():
    def model(x, y):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(y.float()[:, None], 1.0).to_event(1), obs=x)

    with pytest.raises(pv.DataError, match=r"requires input\(s\) \['y'\]"):
        pv.fit(model, lambda x, y: None, X, epochs=1, progress=False)


def test_unconditional_models_keep_working_on_labelled_data(digits):
    torch.manual_seed(0)
    vae = pv.variants.build("vae", digits.shape, latent_dim=2, hidden=(16,))

    def plain_model(x):  # takes no y
        return vae.model(x)

    def plain_guide(x):
        return vae.guide(x)

    history = pv.fit(
        plain_model, plain_guide, (digits.x_train, digits.y_train), epochs=1, progress=False
    )
    assert len(history) == 1
    ll = pv.evaluate.log_likelihood(plain_model, plain_guide, (digits.x_test, digits.y_test), 2)
    assert ll.shape == (len(digits.x_test),)


def test_accepting_passes_what_a_function_takes():
    def takes_y(x, y=None):
        return y

    def takes_x(x):
        return x

    def takes_all(x, **kwargs):
        return kwargs

    inputs = {"x", "y", "mask"}
    assert accepting(takes_all, inputs) is takes_all
    assert accepting(takes_y, inputs)(1, y=2, mask=3) == 2
    assert accepting(takes_x, inputs)(1, y=2, mask=3) == 1
    assert accepting(takes_x, {"x"}) is takes_x


def test_batch_forms_and_bad_batches():
    batch = as_batch((X[:5], Y[:5]))
    assert set(batch) == {"x", "y"} and batch["y"].dtype == torch.long
    assert set(as_batch(TensorDataset(X[:5], Y[:5]))) == {"x", "y"}
    with pytest.raises(pv.DataError, match="'y' has shape"):
        as_batch((X[:5], Y[:4]))
    with pytest.raises(pv.DataError, match="under 'x'"):
        as_batch({"data": X})
    with pytest.raises(pv.DataError, match=r"input 'c'.*NaN"):
        as_batch({"x": X[:3], "c": torch.tensor([0.0, math.nan, 1.0])})
    with pytest.raises(pv.DataError, match="use a dict"):
        as_batch((X, Y, Y))
    assert MISSING == -1


def test_wrong_label_rows_are_refused_before_training():
    m = ConditionalLinearGaussian()
    with pytest.raises(pv.DataError, match="'y' has shape"):
        pv.fit(m.model, m.guide, (X, Y[:-1]), epochs=1, progress=False)


# ---------------------------------------------------------------- model and guide disagree


def _model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True).expand_as(x), 1.0).to_event(1), obs=x)


def test_mismatched_site_shapes_are_named_before_training():
    loc = torch.zeros(3, requires_grad=True)

    def guide(x):
        pyro.param("loc", loc)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    with pytest.raises(ValueError, match="'z'"):
        pv.fit(_model, guide, X, epochs=1, progress=False)
    assert float(loc.detach().abs().sum()) == 0.0  # nothing trained


def test_a_guide_that_names_its_site_differently_is_named():
    def guide(x):
        loc = pyro.param("loc", torch.zeros(2))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("w", dist.Normal(loc, 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"\['z'\].*\['w'\]"):
        pv.fit(_model, guide, X, epochs=1, progress=False)
