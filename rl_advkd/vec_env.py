"""Vectorized environments whose observations are normalized with frozen statistics."""

from collections.abc import Callable

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rl_advkd.normalization import ObservationNormalizer


class FrozenNormalizeVecEnv(VecEnvWrapper):
    """
    Normalize observations with frozen statistics and divide rewards by a fixed scale.

    This is SB3's ``VecNormalize`` with ``training=False``, written as its own wrapper so that
    no code path can update the statistics. The reward scale is the teacher's return standard
    deviation, so the student's critic receives rewards of the size the teacher's critic was trained on.
    Terminal observations in ``infos`` are normalized as well, for SB3's timeout bootstrap.

    :param venv: environments that return raw observations (wrapped in ``Monitor``, so episode
        statistics stay in raw reward units)
    :param normalizer: frozen observation statistics
    :param reward_scale: rewards are divided by this value and clipped to ±``clip_reward``
    """

    def __init__(
        self,
        venv: VecEnv,
        normalizer: ObservationNormalizer,
        reward_scale: float = 1.0,
        clip_reward: float = 10.0,
    ) -> None:
        if normalizer.shape != venv.observation_space.shape:
            raise ValueError(
                f"normalization statistics have shape {normalizer.shape}, observations {venv.observation_space.shape}"
            )
        if not reward_scale > 0:
            raise ValueError(f"reward_scale must be > 0, got {reward_scale}")
        super().__init__(venv)
        self.normalizer = normalizer
        self.reward_scale = float(reward_scale)
        self.clip_reward = float(clip_reward)

    def reset(self) -> np.ndarray:
        return self.normalizer.normalize(self.venv.reset())

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if info.get("terminal_observation") is not None:
                info["terminal_observation"] = self.normalizer.normalize(info["terminal_observation"])
        rewards = np.clip(rewards / self.reward_scale, -self.clip_reward, self.clip_reward).astype(np.float32)
        return self.normalizer.normalize(obs), rewards, dones, infos


def make_student_env(
    env: str | Callable[[], gym.Env], normalizer: ObservationNormalizer, reward_scale: float, n_envs: int, seed: int
) -> FrozenNormalizeVecEnv:
    """Build ``n_envs`` monitored copies of ``env`` (an env id or a factory) behind frozen normalization."""
    return FrozenNormalizeVecEnv(make_vec_env(env, n_envs=n_envs, seed=seed), normalizer, reward_scale)
