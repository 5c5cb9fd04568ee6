"""
Alternating training of the student and a force adversary, after Pinto et al. (2017),
"Robust Adversarial Reinforcement Learning" (RARL).

The student collects its rollouts in a :class:`~rl_advkd.adversaries.ProtagonistEnv` in which the
current adversary pushes. Every ``every`` student iterations, the adversary trains for ``steps``
env steps in a :class:`~rl_advkd.adversaries.ZeroSumEnv` against the frozen student. The
student never observes the adversary's action.
"""

import logging
import time
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from rl_advkd.adversaries.zero_sum import ForcePerturbation, ZeroSumEnv

logger = logging.getLogger(__name__)


class AdversarySlot:
    """
    The adversary that acts inside the student's envs, set once both players exist.

    The student's envs are built before the adversary, whose env needs the student as its
    victim; this slot breaks that cycle. Until an adversary is set, it pushes with zero force.

    :param action_dim: size of the adversary's action
    :param deterministic: act with the adversary's mean action instead of sampling it
    """

    def __init__(self, action_dim: int, deterministic: bool = False) -> None:
        self.action_dim = action_dim
        self.deterministic = deterministic
        self.model: BaseAlgorithm | None = None
        self.enabled = True

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.model is None or not self.enabled:
            return np.zeros(self.action_dim, dtype=np.float32)
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return action


def make_adversary(
    student: BaseAlgorithm, env_id: str, perturbation: ForcePerturbation, seed: int, **ppo_kwargs: Any
) -> PPO:
    """
    Build an SB3 PPO force adversary whose env contains ``student`` as its frozen victim.

    The victim acts with ``student.predict(raw_obs, deterministic=True)``, its deployed behaviour.

    :param student: the protagonist; ``predict`` must take raw observations, as AdvKD's does
    :param ppo_kwargs: PPO hyperparameters; SB3's defaults otherwise
    """

    def victim(obs: np.ndarray) -> np.ndarray:
        action, _ = student.predict(obs, deterministic=True)
        return action

    def make_game() -> gym.Env:
        return ZeroSumEnv(gym.make(env_id), victim, perturbation)

    venv = make_vec_env(make_game, n_envs=1, seed=seed)
    return PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **ppo_kwargs)


class AlternatingAdversaryCallback(BaseCallback):
    """
    Train the force adversary every ``every`` student iterations for ``steps`` env steps.

    It runs at the end of a student rollout, before the student's update, so the student is
    frozen while the adversary trains. Metrics go to the student's logger under ``adversary/``.

    :param adversary: the PPO adversary from :func:`make_adversary`
    :param every: student iterations (rollouts) between two adversary phases
    :param steps: env steps of each adversary phase
    """

    def __init__(self, adversary: PPO, every: int, steps: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if every < 1:
            raise ValueError(f"adversary_every must be >= 1 student iteration, got {every}")
        if steps < 1:
            raise ValueError(f"adversary_steps must be >= 1, got {steps}")
        self.adversary = adversary
        self.every = every
        self.steps = steps
        self.iterations = 0
        self.phases = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.iterations += 1
        if self.iterations % self.every != 0:
            return

        started = time.perf_counter()
        self.adversary.learn(self.steps, reset_num_timesteps=self.phases == 0, progress_bar=False)
        self.phases += 1

        episodes = self.adversary.ep_info_buffer
        if episodes:
            self.logger.record("adversary/ep_rew_mean", float(np.mean([info["r"] for info in episodes])))
        self.logger.record("adversary/total_timesteps", self.adversary.num_timesteps)
        self.logger.record("adversary/phases", self.phases)
        self.logger.record("adversary/phase_seconds", time.perf_counter() - started)
