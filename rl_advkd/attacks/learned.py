"""
The ``optimal`` observation attack: PPO attackers trained against the frozen policy they attack.

ATLA (Zhang et al., 2021, "Robust Reinforcement Learning on State Observations with Learned
Optimal Adversary") shows that the strongest attack on a fixed policy is the optimal policy of an
MDP whose action is the perturbation and whose reward is minus the victim's reward. Here an SB3
PPO agent learns that policy inside :class:`~rl_advkd.adversaries.ZeroSumEnv`. PPO's result
depends on its hyperparameters, so several configurations are trained and the evaluation reports
the strongest, as ATLA does.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch as th
from stable_baselines3 import PPO

from rl_advkd.adversaries.zero_sum import train_observation_adversary
from rl_advkd.policies import FrozenPolicy


@dataclass(frozen=True)
class AttackerConfig:
    """PPO hyperparameters of one optimal attacker; the others are SB3's defaults."""

    name: str
    learning_rate: float
    ent_coef: float
    log_std_init: float


# The configurations differ in how fast and how widely the attacker searches, since a budget of
# tens of thousands of steps is short for PPO:
#   default: SB3's PPO settings. A start std of 1 samples many actions at the box corners, where
#            a sign-gradient attack also ends up.
#   fast:    a learning rate 3 times higher, for short budgets in which 3e-4 barely moves the mean.
#   narrow:  a start std of 0.37 (log std -1), so the stochastic attacker that PPO trains acts close
#            to the deterministic one that the evaluation runs, which helps when a precise
#            perturbation matters more than a large one.
ATTACKER_CONFIGS = (
    AttackerConfig("default", learning_rate=3e-4, ent_coef=0.0, log_std_init=0.0),
    AttackerConfig("fast", learning_rate=1e-3, ent_coef=0.0, log_std_init=0.0),
    AttackerConfig("narrow", learning_rate=3e-4, ent_coef=0.0, log_std_init=-1.0),
)

# Env steps of PPO training per attacker and ε. One attacker trained at 1,090 steps/s against the
# shipped Hopper-v5 teacher (8,192 steps measured, one thread of a 2-core x86_64 machine that was
# also running a training job). From that rate the 3 default attackers take about 4.6 min per ε,
# an estimate, and their evaluation about 7 s each for 50 episodes.
# NOTE: ATLA trains its attackers for millions of steps. A 100,000-step attacker can be weaker
# than the gradient attacks, so a high return under `optimal` does not prove robustness.
OPTIMAL_STEPS = 100_000

# Episodes per trained attacker on which the evaluation chooses the strongest one, apart from the
# evaluation episodes.
SELECTION_EPISODES = 10

# PPO's rollout length: SB3's default, or the whole budget when that is shorter, so a small budget
# trains for the requested steps instead of one full 2048-step rollout.
ROLLOUT_STEPS = 2048


@dataclass
class LearnedAttacker:
    """
    A trained optimal attacker: maps a normalized observation ``s`` to ``s + ε · a``.

    :param model: the PPO attacker; it takes the clean normalized observation and returns ``a``
    :param epsilon: the budget it was trained at, in normalized units
    :param config: its hyperparameters
    :param steps: env steps it trained for
    """

    model: PPO
    epsilon: float
    config: AttackerConfig
    steps: int

    def perturb(self, obs: th.Tensor, epsilon: float) -> th.Tensor:
        """
        Return ``obs + ε · a`` for a batch of clean normalized observations, with ``a`` in ``[-1, 1]^n``.

        :raises ValueError: when ``epsilon`` is not the budget the attacker was trained at
        """
        if not math.isclose(epsilon, self.epsilon, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(
                f"this attacker was trained at epsilon {self.epsilon:g}, not {epsilon:g}; train one at {epsilon:g}"
            )
        # NOTE: in training the victim normalizes and then clips the shifted raw observation, while
        # here the shift is added after the clip. The two differ only for observations beyond
        # ±clip_obs standard deviations, where this perturbation may leave the clip range.
        direction, _ = self.model.predict(obs.detach().cpu().numpy(), deterministic=True)
        direction = np.clip(direction, -1.0, 1.0)
        return obs + epsilon * th.as_tensor(direction, dtype=obs.dtype)


def attacker_configs(count: int) -> tuple[AttackerConfig, ...]:
    """
    Return the first ``count`` configurations of :data:`ATTACKER_CONFIGS`.

    :raises ValueError: when ``count`` is not between 1 and the number of configurations
    """
    if not 1 <= count <= len(ATTACKER_CONFIGS):
        raise ValueError(
            f"the number of optimal attackers must be between 1 and {len(ATTACKER_CONFIGS)}, got {count}; "
            f"pass e.g. --optimal-attackers {len(ATTACKER_CONFIGS)}"
        )
    return ATTACKER_CONFIGS[:count]


def train_optimal_attackers(
    policy: FrozenPolicy,
    env_id: str,
    epsilon: float,
    total_timesteps: int = OPTIMAL_STEPS,
    count: int = len(ATTACKER_CONFIGS),
    seed: int = 0,
) -> list[LearnedAttacker]:
    """
    Train the first ``count`` attacker configurations against ``policy`` at budget ``epsilon``.

    :param total_timesteps: env steps per attacker; PPO rounds it up to whole rollouts
    :param seed: seed of every attacker's PPO and env resets, so the attackers differ only by
        their configuration
    :raises ValueError: for ``total_timesteps < 1`` or a ``count`` out of range
    """
    if total_timesteps < 1:
        raise ValueError(f"the optimal attack needs total_timesteps >= 1, got {total_timesteps}")
    n_steps = min(ROLLOUT_STEPS, total_timesteps)
    attackers = []
    for config in attacker_configs(count):
        model = train_observation_adversary(
            policy,
            env_id,
            epsilon,
            total_timesteps,
            seed=seed,
            n_steps=n_steps,
            batch_size=min(64, n_steps),
            learning_rate=config.learning_rate,
            ent_coef=config.ent_coef,
            policy_kwargs={"log_std_init": config.log_std_init},
        )
        attackers.append(LearnedAttacker(model, epsilon, config, steps=int(model.num_timesteps)))
    return attackers
