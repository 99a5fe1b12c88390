"""Conditional and semi-supervised models: CVAE, CMMA and M2, against hand computations."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

import pyro_vaes as pv
from pyro_vaes.errors import DataError

K = 10


@pytest.fixture(scope="module")
def digits():
    return pv.data.load("digits").map(lambda x: pv.data.binarize(x, seed=0))


def build(name, digits, **options):
    torch.manual_seed(0)
    return pv.variants.build(name, digits.shape, latent_dim=3, hidden=(32,), **options)


def elbo_given(m2, x, labels, z):
    """ELBO terms of M2 at labels ``labels`` and codes ``z``, by hand from its parts:
    log p(y) + log p(z) + log p(x | y, z) - log q(z | x, y), one per datapoint."""
    params = m2.decoder(z, labels)
    log_px = m2.likelihood(params, 3).log_prob(x)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = m2.q_z(x, labels).log_prob(z)
    return -math.log(K) + log_pz + log_px - log_qz


def test_m2_on_an_unlabelled_batch_is_the_hand_sum_over_the_labels(digits):
    """-U(x) = sum_y q(y|x) (-L(x, y)) - H(q(y|x)), the K labels summed exactly (enumeration)."""
    m2 = build("m2", digits)
    x = digits.x_train[:7]
    y = torch.full((7,), -1)
    pyro.set_rng_seed(3)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(m2.model, m2.guide, x, y)
    # the same draws of z: enumeration draws one z per (label, datapoint), (K, 7, 3), first
    pyro.set_rng_seed(3)
    labels = torch.arange(K).unsqueeze(-1).expand(K, 7)
    with torch.no_grad():
        z = m2.q_z(x, labels).rsample()
        log_q_y = m2.q_y(x).logits.log_softmax(-1).T  # (K, 7)
        elbo = elbo_given(m2, x, labels, z)  # (K, 7)
        u = (log_q_y.exp() * (elbo - log_q_y)).sum(0)
    assert float(loss) == pytest.approx(float(-u.sum()), rel=1e-5)


def test_m2_on_labelled_data_is_the_supervised_objective(digits):
    """-L(x, y) - alpha log q(y|x) for every datapoint, exactly: q(y|x) is clamped to the known
    label, so the other enumerated labels weigh 0 (their draws of z are made, and ignored)."""
    m2 = build("m2", digits, alpha=2.5)
    x, y = digits.x_train[:6], digits.y_train[:6]
    pyro.set_rng_seed(4)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(m2.model, m2.guide, x, y)
    pyro.set_rng_seed(4)
    labels = torch.arange(K).unsqueeze(-1).expand(K, 6)
    with torch.no_grad():
        z = m2.q_z(x, labels).rsample()  # one draw per enumerated label, as the guide makes
        z = z.gather(0, y.view(1, 6, 1).expand(1, 6, 3))[0]  # the draw at each known label
        elbo = elbo_given(m2, x, y, z)
        log_q = m2.q_y(x).log_prob(y)
    assert float(loss) == pytest.approx(float(-(elbo + 2.5 * log_q).sum()), rel=1e-5)
    (grad,) = torch.autograd.grad(loss, m2.classifier[-1].bias)
    assert bool(torch.isfinite(grad).all())  # no 0 * inf from the clamped labels


def test_m2_mixed_batch_is_the_labelled_plus_the_unlabelled_objective(digits):
    """A batch mixing both kinds costs what the two kinds cost apart (same z draws: the ones
    of each datapoint are taken from the mixed batch's single draw)."""
    m2 = build("m2", digits, alpha=0.7)
    x, y = digits.x_train[:8], digits.y_train[:8].clone()
    y[::2] = -1
    enum = TraceEnum_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(0)
    both = float(enum.differentiable_loss(m2.model, m2.guide, x, y))
    eps = torch.randn(K, 8, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(K).unsqueeze(-1).expand(K, 8)
    with torch.no_grad():
        pyro.set_rng_seed(0)
        z = m2.q_z(x, labels).rsample()
        elbo = elbo_given(m2, x, labels, z)  # (K, 8)
        log_q_y = m2.q_y(x).logits.log_softmax(-1).T
        known = y >= 0
        sup = -(
            elbo.gather(0, y.clamp_min(0).view(1, 8))[0]
            + 0.7 * log_q_y.gather(0, y.clamp_min(0).view(1, 8))[0]
        )
        unsup = -(log_q_y.exp() * (elbo - log_q_y)).sum(0)
    del eps
    assert both == pytest.approx(float(torch.where(known, sup, unsup).sum()), rel=1e-5)


def test_m2_learns_to_classify_from_few_labels(digits):
    """100 labels (10 a class) and 1,337 unlabelled digits: the classifier beats chance 3x."""
    m2 = build("m2", digits)
    y = torch.full_like(digits.y_train, -1)
    for k in range(K):
        idx = (digits.y_train == k).nonzero()[:10, 0]
        y[idx] = k
    pv.variants.registry["m2"].fit(m2, (digits.x_train, y), epochs=15, seed=0, progress=False)
    accuracy = float((m2.predict(digits.x_test) == digits.y_test).float().mean())
    assert accuracy > 0.3


def test_cmma_decoder_never_sees_the_label_and_cvae_does(digits):
    x = digits.x_train[:5]
    z = torch.randn(5, 3)
    for name, sees in (("cmma", False), ("cvae", True)):
        model = build(name, digits)
        means = []
        for label in (0, 7):
            y = torch.full((5,), label)
            trace = poutine.trace(poutine.condition(model.model, data={"z": z})).get_trace(x, y)
            means.append(trace.nodes["x"]["fn"].base_dist.logits)
        assert torch.equal(means[0], means[1]) is not sees, name
    cmma = build("cmma", digits)
    first = next(m for m in cmma.decoder.modules() if isinstance(m, torch.nn.Linear))
    assert first.in_features == 3  # z alone


def test_cvae_objective_is_reconstruction_plus_kl_to_the_label_prior(digits):
    """E_q[-log p(x|z,y)] + KL(q(z|x,y) || p(z|y)), the KL in closed form, by hand."""
    cvae = build("cvae", digits)
    with torch.no_grad():  # a prior that is not N(0, I), so p(z|y) matters
        cvae.prior.loc.normal_()
    x, y = digits.x_train[:6], digits.y_train[:6]
    pyro.set_rng_seed(5)
    loss = pv.objectives.ELBO().differentiable_loss(cvae.model, cvae.guide, x, y)
    pyro.set_rng_seed(5)
    with torch.no_grad():
        q = cvae.q(x, y)
        z = q.rsample()
        rec = -cvae.likelihood(cvae.decoder(z, y), 3).log_prob(x)
        kl = torch.distributions.kl_divergence(q, cvae.prior(y))
    assert float(loss) == pytest.approx(float((rec + kl).sum()), rel=1e-5)


def test_conditional_log_likelihood_is_below_the_exact_bound_and_models_generate(digits):
    cvae = build("cvae", digits)
    x, y = digits.x_test[:20], digits.y_test[:20]
    ll = pv.evaluate.log_likelihood(cvae.model, cvae.guide, (x, y), 200)
    elbo = pv.evaluate.elbo(cvae.model, cvae.guide, (x, y), 200)
    assert bool((ll >= elbo - 1e-4).all())
    draws = pyro.infer.Predictive(cvae.model, num_samples=2)(None, torch.tensor([3, 3, 8]))
    assert draws["x"].shape == (2, 3, 1, 8, 8)
    m2 = build("m2", digits)
    assert pyro.infer.Predictive(m2.model, num_samples=4)(None)["x"].shape == (4, 1, 1, 8, 8)


def label_shares(digits, name, epochs):
    """The share of 100 conditional samples of each label that the project's classifier, trained
    on the real digits, assigns to that label. The samples are the likelihood's means (pixel
    probabilities, in [0, 1] like the digits' intensities) at codes drawn from p(z | y); the
    model is fitted to the binarised digits."""
    raw = pv.data.load("digits")
    clf = pv.classifier.train_classifier(raw.x_train, raw.y_train, epochs=10)
    assert pv.classifier.accuracy(clf, raw.x_test, raw.y_test) >= 0.97
    torch.manual_seed(0)
    model = pv.variants.build(name, digits.shape, latent_dim=4, hidden=(256,))
    pv.variants.registry[name].fit(
        model, (digits.x_train, digits.y_train), epochs=epochs, seed=0, progress=False
    )
    model.eval()
    torch.manual_seed(1)
    return [float((clf.predict(model.sample(100, k)) == k).float().mean()) for k in range(K)]


@pytest.mark.slow
def test_cvae_samples_are_of_the_asked_label(digits):
    """For every label, >= 90% of the CVAE's conditional samples are classified as that label."""
    shares = label_shares(digits, "cvae", 100)
    assert min(shares) >= 0.9, shares


@pytest.mark.slow
def test_cmma_samples_carry_the_label_through_z_alone(digits):
    """The CMMA's decoder never sees y: its samples show the label only as far as the class
    priors p(z | y) have separated, which takes longer than the CVAE's direct route. After 100
    epochs every label is well above chance (0.1); the README gives the shares after 300."""
    shares = label_shares(digits, "cmma", 100)
    assert min(shares) >= 0.4 and sum(shares) / K >= 0.55, shares


@pytest.mark.parametrize("name", ["cvae", "cmma", "m2"])
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (lambda y: torch.where(y == 4, 10, y), "label 10 at index .* outside the 10 classes"),
        (lambda y: y[:-3], r"input 'y' has shape \(1434,\), but x has 1437 rows"),
        (lambda y: y.float(), "integer class indices"),
    ],
)
def test_bad_labels_are_named_before_training(digits, name, labels, message):
    model = build(name, digits)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DataError, match=message):
        pv.fit(model.model, model.guide, (digits.x_train, labels(digits.y_train)),
               loss=pv.variants.registry[name].loss(), epochs=1, progress=False)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("name", ["cvae", "cmma"])
def test_missing_labels_are_refused_where_the_model_needs_them(digits, name):
    model = build(name, digits)
    y = digits.y_train.clone()
    y[700] = -1
    with pytest.raises(DataError, match=r"needs a label for every datapoint: 1 missing .* 700"):
        pv.fit(model.model, model.guide, (digits.x_train, y), epochs=1, progress=False)
    with pytest.raises(DataError, match="needs labels y"):
        pv.fit(model.model, model.guide, digits.x_train, epochs=1, progress=False)


def test_a_bad_label_from_an_unsized_stream_is_named_by_its_place_in_the_stream(digits):
    """fit checks a stream's labels batch by batch as they come (the models skip their own
    per-call check inside fit, so that the step can be captured)."""
    from torch.utils.data import DataLoader, IterableDataset

    y = digits.y_train.clone()
    y[250] = 10

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(zip(digits.x_train, y, strict=True))

    model = build("cvae", digits)
    with pytest.raises(DataError, match=r"label 10 at index 250 is outside the 10 classes"):
        pv.fit(model.model, model.guide, DataLoader(Stream(), batch_size=100), epochs=1,
               progress=False)  # fmt: skip
