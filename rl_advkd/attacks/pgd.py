"""
Uniform noise and projected gradient ascent (PGD) on the ℓ∞ ball around a normalized observation.

The maximal action difference (MAD) attack follows SA-PPO (Zhang et al., 2020, "Robust Deep
Reinforcement Learning against Adversarial Perturbations on State Observations"): PGD on
``KL(π(·|s) || π(·|s̃))`` with 10 steps of size ε/10 from a random start. The critic attack of
the same paper runs the same PGD to minimize the value estimate ``V(s̃)`` of the policy's own critic.
"""

import typing
from collections.abc import Callable

import torch as th

from rl_advkd.distributions import gaussian_kl
from rl_advkd.policies import FrozenPolicy

if typing.TYPE_CHECKING:
    from rl_advkd.attacks.learned import LearnedAttacker

# ``optimal`` is a PPO attacker trained against the evaluated policy (see rl_advkd.attacks.learned),
# so perturb() can only apply it with a trained attacker passed in.
OBSERVATION_ATTACKS = ("natural", "random", "mad", "critic", "optimal")


def uniform_noise(obs: th.Tensor, epsilon: float, generator: th.Generator | None = None) -> th.Tensor:
    """Return ``obs`` plus noise drawn uniformly from the ε-box, independently per dimension."""
    noise = th.rand(obs.shape, generator=generator, dtype=obs.dtype) * 2.0 - 1.0
    return obs + epsilon * noise


def pgd_maximize(
    objective: Callable[[th.Tensor], th.Tensor],
    obs: th.Tensor,
    epsilon: float,
    steps: int = 10,
    step_size: float | None = None,
    generator: th.Generator | None = None,
    mask: th.Tensor | None = None,
) -> th.Tensor:
    """
    Find ``s̃`` in the ℓ∞ ball of radius ``epsilon`` around ``obs`` that maximizes ``objective``.

    Each step moves by ``step_size`` along the sign of the gradient and projects back onto the
    ball. The best iterate per sample is returned, so the result is never worse than the start.

    :param objective: maps a batch of observations to one value per sample; must be differentiable
    :param obs: clean normalized observations, (batch, obs_dim)
    :param epsilon: radius of the ball; 0 returns ``obs`` unchanged
    :param steps: gradient steps
    :param step_size: defaults to ``epsilon / steps``
    :param generator: seeds the random start
    :param mask: 1 for the dimensions the attack may change and 0 for those it leaves clean,
        shape (obs_dim,); ``None`` lets it change every dimension
    :return: perturbed observations, detached, with ``|s̃ - s|_∞ <= epsilon``
    """
    obs = obs.detach()
    if epsilon == 0.0 or steps == 0:
        return obs.clone()
    step_size = epsilon / steps if step_size is None else step_size

    current = uniform_noise(obs, epsilon, generator)
    if mask is not None:
        mask = mask.to(obs.dtype)
        current = obs + (current - obs) * mask
    best = current.clone()
    best_value = th.full(obs.shape[:1], -float("inf"), dtype=obs.dtype)

    for _ in range(steps):
        current.requires_grad_(True)
        with th.enable_grad():
            value = objective(current)
            (gradient,) = th.autograd.grad(value.sum(), current)

        with th.no_grad():
            improved = value.detach() > best_value
            best[improved] = current.detach()[improved]
            best_value = th.where(improved, value.detach(), best_value)
            step = step_size * gradient.sign()
            if mask is not None:
                step = step * mask
            current = current.detach() + step
            current = obs + (current - obs).clamp(-epsilon, epsilon)

    # The last iterate has not been scored inside the loop.
    with th.no_grad():
        value = objective(current)
        improved = value > best_value
        best[improved] = current[improved]
    return best.detach()


def mad_attack(
    gaussian: Callable[[th.Tensor], tuple[th.Tensor, th.Tensor]],
    obs: th.Tensor,
    epsilon: float,
    steps: int = 10,
    generator: th.Generator | None = None,
    mask: th.Tensor | None = None,
) -> th.Tensor:
    """
    Maximal action difference: PGD on ``KL(π(·|s) || π(·|s̃))`` against the attacked policy itself.

    :param gaussian: maps observations to the mean and log std of the attacked policy
    :param obs: clean normalized observations, (batch, obs_dim)
    :param mask: the dimensions the attack may change, as in :func:`pgd_maximize`
    """
    with th.no_grad():
        clean_mean, clean_log_std = gaussian(obs)

    def objective(perturbed: th.Tensor) -> th.Tensor:
        mean, log_std = gaussian(perturbed)
        return gaussian_kl(clean_mean, clean_log_std, mean, log_std)

    return pgd_maximize(objective, obs, epsilon, steps=steps, generator=generator, mask=mask)


def critic_attack(
    value: Callable[[th.Tensor], th.Tensor],
    obs: th.Tensor,
    epsilon: float,
    steps: int = 10,
    generator: th.Generator | None = None,
) -> th.Tensor:
    """
    Critic attack: PGD that minimizes the value estimate ``V(s̃)`` of the perturbed observation.

    A low ``V(s̃)`` means the policy acts as if it were in a bad state, which leads it to act badly
    in the true one. The attack needs only the policy's own critic, no model of the task.

    :param value: maps observations to one value estimate per sample, for example
        :meth:`~rl_advkd.policies.FrozenPolicy.value`
    :param obs: clean normalized observations, (batch, obs_dim)
    """
    # NOTE: a student's value head learns only through the λ-weighted PPO term of AdvKD. With
    # λ = 0 it keeps its random initial weights, so this attack then follows an arbitrary direction.

    def objective(perturbed: th.Tensor) -> th.Tensor:
        return -value(perturbed)

    return pgd_maximize(objective, obs, epsilon, steps=steps, generator=generator)


def perturb(
    attack: str,
    policy: FrozenPolicy,
    obs: th.Tensor,
    epsilon: float,
    generator: th.Generator | None = None,
    steps: int = 10,
    attacker: "LearnedAttacker | None" = None,
) -> th.Tensor:
    """
    Apply the named observation attack to a batch of normalized observations.

    :param attacker: the trained attacker of the ``optimal`` attack, trained at this ``epsilon``
    :raises ValueError: for an unknown attack, or ``optimal`` without a matching ``attacker``
    """
    if attack == "natural":
        return obs
    if attack == "random":
        return uniform_noise(obs, epsilon, generator)
    if attack == "mad":
        return mad_attack(policy.gaussian, obs, epsilon, steps=steps, generator=generator)
    if attack == "critic":
        return critic_attack(policy.value, obs, epsilon, steps=steps, generator=generator)
    if attack == "optimal":
        if attacker is None:
            raise ValueError(
                "the optimal attack needs a trained attacker; train one with "
                "rl_advkd.attacks.train_optimal_attackers and pass it as attacker="
            )
        return attacker.perturb(obs, epsilon)
    raise ValueError(f"unknown observation attack {attack!r}; choose from {', '.join(OBSERVATION_ATTACKS)}")
