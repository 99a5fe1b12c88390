"""Sprites with known factors, and the MIG and FactorVAE scores read on them."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vaes import data, metrics, sprites


@pytest.fixture(scope="module")
def grid() -> sprites.Sprites:
    return sprites.generate(size=32, scales=4, rotations=6, positions=8)


# ---------------------------------------------------------------- sprites


def test_every_factor_combination_drawn_once_as_a_binary_image(grid: sprites.Sprites) -> None:
    assert grid.factor_sizes == (3, 4, 6, 8, 8)
    assert grid.images.shape == (3 * 4 * 6 * 8 * 8, 1, 32, 32)
    assert torch.equal(grid.images.unique(), torch.tensor([0.0, 1.0]))
    assert grid.factors.unique(dim=0).shape[0] == len(grid.factors)
    for k, n in enumerate(grid.factor_sizes):
        assert torch.equal(grid.factors[:, k].unique(), torch.arange(n))


def test_sprites_lie_inside_the_frame(grid: sprites.Sprites) -> None:
    img = grid.images[:, 0]
    assert (img.sum((1, 2)) > 0).all()
    border = torch.cat([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], 1)
    assert border.sum() == 0


def test_area_matches_the_shape_and_grows_as_scale_squared(grid: sprites.Sprites) -> None:
    r = 0.2 * 32
    exact = {0: (1.6 * r) ** 2, 1: math.pi * r * (0.5 * r)}  # square, ellipse at scale 1
    area = grid.images.sum((1, 2, 3))
    for shape, a in exact.items():
        big = area[(grid.factors[:, 0] == shape) & (grid.factors[:, 1] == 3)].mean()
        small = area[(grid.factors[:, 0] == shape) & (grid.factors[:, 1] == 0)].mean()
        assert big == pytest.approx(a, rel=0.05)
        assert big / small == pytest.approx(4.0, rel=0.15)


def test_centre_of_mass_follows_x_and_y(grid: sprites.Sprites) -> None:
    sym = grid.factors[:, 0] < 2  # squares and ellipses are centrally symmetric
    img, f = grid.images[sym, 0], grid.factors[sym]
    pix = torch.arange(32.0) + 0.5
    mass = img.sum((1, 2))
    cx = (img.sum(1) * pix).sum(1) / mass
    cy = (img.sum(2) * pix).sum(1) / mass
    margin = 0.2 * 32 * math.sqrt(2)
    centre = torch.linspace(margin, 32 - margin, 8)
    assert (cx - centre[f[:, 3]]).abs().max() < 0.5
    assert (cy - centre[f[:, 4]]).abs().max() < 0.5


def test_ellipse_major_axis_turns_with_rotation(grid: sprites.Sprites) -> None:
    pix = torch.arange(32.0) + 0.5
    yy, xx = torch.meshgrid(pix, pix, indexing="ij")
    for rot in range(6):
        sel = (
            (grid.factors[:, 0] == 1)
            & (grid.factors[:, 1] == 3)
            & (grid.factors[:, 2] == rot)
            & (grid.factors[:, 3] == 4)
            & (grid.factors[:, 4] == 4)
        )
        img = grid.images[sel, 0, :, :][0]
        w = img / img.sum()
        mx, my = (w * xx).sum(), (w * yy).sum()
        cov = torch.stack(
            [
                torch.stack([(w * (xx - mx) ** 2).sum(), (w * (xx - mx) * (yy - my)).sum()]),
                torch.stack([(w * (xx - mx) * (yy - my)).sum(), (w * (yy - my) ** 2).sum()]),
            ]
        )
        major = torch.linalg.eigh(cov).eigenvectors[:, -1]
        angle = float(torch.atan2(major[1], major[0])) % math.pi
        want = rot * math.pi / 2 / 6
        assert min(abs(angle - want), math.pi - abs(angle - want)) < 0.1


def test_heart_rotations_are_distinct_images(grid: sprites.Sprites) -> None:
    sel = (grid.factors[:, 0] == 2) & (grid.factors[:, 1] == 3) & (grid.factors[:, 3] == 4)
    sel &= grid.factors[:, 4] == 4
    imgs = grid.images[sel].flatten(1)
    assert imgs.unique(dim=0).shape[0] == 6


def test_sprites_dataset_is_registered() -> None:
    s = data.load("sprites")
    assert s.shape == (1, 32, 32)
    assert len(s.x_train) + len(s.x_test) == 4608
    assert set(s.y_train.unique().tolist()) == {0, 1, 2}


@pytest.mark.parametrize("kwargs", [{"size": 8}, {"scales": 0}, {"positions": 0}])
def test_sprites_refuse_impossible_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        sprites.generate(**kwargs)


# ---------------------------------------------------------------- MIG


def _two_binary_factors() -> torch.Tensor:
    return torch.cartesian_prod(torch.arange(2), torch.arange(2)).repeat(25, 1)


def test_mutual_information_of_known_joints() -> None:
    f = _two_binary_factors()
    assert metrics.mutual_information(f[:, 0], f[:, 0]) == pytest.approx(math.log(2))
    assert metrics.mutual_information(f[:, 0], f[:, 1]) == pytest.approx(0.0, abs=1e-12)
    three = torch.arange(300) % 3
    assert metrics.mutual_information(three, three) == pytest.approx(math.log(3))


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (lambda v: torch.stack([v[:, 0], v[:, 1]], 1), 1.0),  # one dimension per factor
        (lambda v: torch.stack([v[:, 0], v[:, 0]], 1), 0.0),  # v0 twice, v1 nowhere
        # z1 = v0 + 2 v1 knows both: gap 0 for v0, log 2 - 0 for v1
        (lambda v: torch.stack([v[:, 0], v[:, 0] + 2 * v[:, 1]], 1), 0.5),
    ],
)
def test_mig_by_hand(code, expected: float) -> None:
    f = _two_binary_factors()
    assert metrics.mig(code(f).float(), f) == pytest.approx(expected, abs=1e-12)


def test_mig_orders_perfect_entangled_and_random_codes(grid: sprites.Sprites) -> None:
    f = grid.factors
    gen = torch.Generator().manual_seed(0)
    perfect = torch.cat([f.float(), torch.randn(len(f), 3, generator=gen)], 1)
    q = torch.linalg.qr(torch.randn(5, 5, generator=gen))[0]
    mixed = (f.float() / torch.tensor(grid.factor_sizes)) @ q
    noise = torch.randn(len(f), 8, generator=gen)
    assert metrics.mig(perfect, f) > 0.98
    assert metrics.mig(mixed, f) < 0.5
    assert metrics.mig(noise, f) < 0.02


# ---------------------------------------------------------------- FactorVAE score


def test_factor_vae_score_is_one_for_perfect_codes_and_chance_for_noise(
    grid: sprites.Sprites,
) -> None:
    f = grid.factors
    gen = torch.Generator().manual_seed(1)
    perfect = torch.cat([f.float(), torch.randn(len(f), 3, generator=gen)], 1)
    assert metrics.factor_vae_score(perfect, f) == 1.0
    noise = torch.randn(len(f), 8, generator=gen)
    assert metrics.factor_vae_score(noise, f) == pytest.approx(1 / 5, abs=0.07)


def test_factor_vae_score_ignores_units_and_collapsed_dimensions(grid: sprites.Sprites) -> None:
    f = grid.factors
    gen = torch.Generator().manual_seed(2)
    codes = f.float() + 3.0 * torch.randn(f.shape, generator=gen)
    base = metrics.factor_vae_score(codes, f)
    assert 0.5 < base < 1.0
    # each dimension is divided by its spread first, so units do not matter
    units = torch.tensor([1e-1, 1.0, 1e2, 1e3, 3.0])
    assert metrics.factor_vae_score(codes * units, f) == base
    # a dimension collapsed to the prior (its mean hardly moves) takes no part
    collapsed = 1e-3 * torch.randn(len(f), 1, generator=gen)
    assert metrics.factor_vae_score(torch.cat([codes, collapsed], 1), f) == base
    with pytest.raises(ValueError, match="standard deviation"):
        metrics.factor_vae_score(collapsed, f)


def test_factor_vae_score_counts_votes_for_a_constant_factor_as_disentanglement_lib(
    grid: sprites.Sprites,
) -> None:
    # three varying factors coded perfectly and a fourth that never varies: the votes that fix
    # the constant factor hold nothing still, no dimension wins them, and a quarter of the
    # evaluation votes are lost (disentanglement_lib: 0.749)
    f = torch.cat([grid.factors[:, 2:], torch.zeros(len(grid.factors), 1, dtype=torch.long)], 1)
    codes = f[:, :3].float() + 1e-3 * torch.randn(
        len(f), 3, generator=torch.Generator().manual_seed(3)
    )
    score = metrics.factor_vae_score(codes, f)
    assert score == pytest.approx(0.75, abs=4 * math.sqrt(0.75 * 0.25 / 800))
    assert metrics.factor_vae_score(codes, f, skip_constant_factors=True) == 1.0


def test_factor_vae_score_prunes_below_a_standard_deviation_of_005(grid: sprites.Sprites) -> None:
    f = grid.factors
    gen = torch.Generator().manual_seed(4)
    codes = f.float() + 3.0 * torch.randn(f.shape, generator=gen)
    codes = codes / codes.std(0)
    base = metrics.factor_vae_score(codes, f)
    # a pure-noise dimension of spread 0.07 takes part (it would win some votes)...
    noisy = torch.cat([codes, 0.07 * torch.randn(len(f), 1, generator=gen)], 1)
    assert metrics.factor_vae_score(noisy, f) != base
    assert metrics.factor_vae_score(noisy, f, min_std=0.1) == base
    # ...one of spread 0.04 does not
    quiet = torch.cat([codes, 0.04 * torch.randn(len(f), 1, generator=gen)], 1)
    assert metrics.factor_vae_score(quiet, f) == base


@pytest.mark.parametrize(
    ("codes", "factors"),
    [
        (torch.zeros(10, 3), torch.zeros(9, 2, dtype=torch.long)),
        (torch.full((10, 3), float("nan")), torch.zeros(10, 2, dtype=torch.long)),
        (torch.zeros(10, 3), torch.zeros(10, 2)),
        (torch.zeros(10), torch.zeros(10, 2, dtype=torch.long)),
    ],
)
def test_metrics_refuse_bad_input(codes: torch.Tensor, factors: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        metrics.mig(codes, factors)
    with pytest.raises(ValueError):
        metrics.factor_vae_score(codes, factors)


# ---------------------------------------------------------------- Fréchet distance


def test_frechet_distance_matches_gaussian_closed_forms():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(200000, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(200000, 3, generator=gen, dtype=torch.float64)
    assert metrics.frechet_distance(a, b) == pytest.approx(0.0, abs=2e-3)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert metrics.frechet_distance(a, b + shift) == pytest.approx(5.25, abs=0.02)
    scales = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    # diagonal covariances: sum_i (s_i - t_i)^2 for standard deviations s, t
    assert metrics.frechet_distance(a, b * scales) == pytest.approx(0 + 1 + 4, abs=0.05)
    with pytest.raises(ValueError):
        metrics.frechet_distance(a[:, :2], b)
