"""Closed-form divergences against torch.distributions."""

import pytest
import torch as th
from torch.distributions import Independent, Normal, kl_divergence

from rl_advkd.distributions import gaussian_kl, teacher_student_divergence


def _random_gaussians(batch: int, dim: int, seed: int):
    generator = th.Generator().manual_seed(seed)
    mean_p, mean_q = th.randn(2, batch, dim, generator=generator, dtype=th.float64)
    log_std_p, log_std_q = 0.5 * th.randn(2, batch, dim, generator=generator, dtype=th.float64)
    return mean_p, log_std_p, mean_q, log_std_q


def test_gaussian_kl_matches_monte_carlo():
    mean_p, log_std_p, mean_q, log_std_q = _random_gaussians(batch=4, dim=3, seed=0)
    p = Independent(Normal(mean_p, log_std_p.exp()), 1)
    q = Independent(Normal(mean_q, log_std_q.exp()), 1)

    samples = p.sample((200_000,))
    monte_carlo = (p.log_prob(samples) - q.log_prob(samples)).mean(dim=0)
    closed_form = gaussian_kl(mean_p, log_std_p, mean_q, log_std_q)

    # Standard error of the estimate is below 0.01 for these scales.
    assert th.allclose(closed_form, monte_carlo, atol=0.03, rtol=0.02), (closed_form, monte_carlo)


def test_gaussian_kl_matches_torch_closed_form():
    mean_p, log_std_p, mean_q, log_std_q = _random_gaussians(batch=16, dim=6, seed=1)
    expected = kl_divergence(
        Independent(Normal(mean_p, log_std_p.exp()), 1), Independent(Normal(mean_q, log_std_q.exp()), 1)
    )
    assert th.allclose(gaussian_kl(mean_p, log_std_p, mean_q, log_std_q), expected, atol=1e-10)


def test_gaussian_kl_zero_for_identical():
    mean, log_std, _, _ = _random_gaussians(batch=8, dim=2, seed=2)
    assert th.allclose(gaussian_kl(mean, log_std, mean, log_std), th.zeros(8, dtype=th.float64))


def test_reverse_direction_swaps_arguments():
    mean_p, log_std_p, mean_q, log_std_q = _random_gaussians(batch=8, dim=2, seed=3)
    reverse = teacher_student_divergence(mean_p, log_std_p, mean_q, log_std_q, direction="reverse")
    assert th.allclose(reverse, gaussian_kl(mean_q, log_std_q, mean_p, log_std_p))


def test_hard_targets_are_squared_error():
    mean_p, log_std_p, mean_q, log_std_q = _random_gaussians(batch=8, dim=2, seed=4)
    hard = teacher_student_divergence(mean_p, log_std_p, mean_q, log_std_q, hard_targets=True)
    assert th.allclose(hard, ((mean_p - mean_q) ** 2).sum(dim=-1))


def test_unknown_direction_rejected():
    mean_p, log_std_p, mean_q, log_std_q = _random_gaussians(batch=1, dim=1, seed=5)
    with pytest.raises(ValueError, match="'sideways'"):
        teacher_student_divergence(mean_p, log_std_p, mean_q, log_std_q, direction="sideways")
