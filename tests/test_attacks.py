"""Observation attacks on the shipped InvertedPendulum-v5 teacher."""

import torch as th

from rl_advkd.attacks import mad_attack, uniform_noise
from rl_advkd.distributions import gaussian_kl
from conftest import pendulum_states


def _normalized_states(teacher, count: int = 256) -> th.Tensor:
    return th.as_tensor(teacher.normalizer.normalize(pendulum_states(count)))


def _kl_to_clean(teacher, clean: th.Tensor, perturbed: th.Tensor) -> th.Tensor:
    with th.no_grad():
        mean, log_std = teacher.gaussian(clean)
        mean_adv, log_std_adv = teacher.gaussian(perturbed)
    return gaussian_kl(mean, log_std, mean_adv, log_std_adv)


def test_mad_stays_inside_epsilon_ball(pendulum_teacher):
    clean = _normalized_states(pendulum_teacher)
    for epsilon in (0.05, 0.3):
        perturbed = mad_attack(pendulum_teacher.gaussian, clean, epsilon, generator=th.Generator().manual_seed(0))
        assert (perturbed - clean).abs().max().item() <= epsilon + 1e-6


def test_mad_beats_random_noise(pendulum_teacher):
    clean = _normalized_states(pendulum_teacher)
    generator = th.Generator().manual_seed(0)
    mad = mad_attack(pendulum_teacher.gaussian, clean, 0.3, generator=generator)
    noise = uniform_noise(clean, 0.3, generator=generator)

    kl_mad = _kl_to_clean(pendulum_teacher, clean, mad).mean().item()
    kl_noise = _kl_to_clean(pendulum_teacher, clean, noise).mean().item()
    assert kl_mad > 2.0 * kl_noise, (kl_mad, kl_noise)


def test_zero_epsilon_leaves_states_unchanged(pendulum_teacher):
    clean = _normalized_states(pendulum_teacher, count=16)
    assert th.equal(mad_attack(pendulum_teacher.gaussian, clean, 0.0), clean)


def test_seeded_attack_is_reproducible(pendulum_teacher):
    clean = _normalized_states(pendulum_teacher, count=32)
    first = mad_attack(pendulum_teacher.gaussian, clean, 0.3, generator=th.Generator().manual_seed(7))
    second = mad_attack(pendulum_teacher.gaussian, clean, 0.3, generator=th.Generator().manual_seed(7))
    assert th.equal(first, second)
