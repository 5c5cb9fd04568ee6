"""Shared fixtures: the shipped InvertedPendulum-v5 teacher and small teachers trained here."""

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from rl_advkd.paths import SOURCE_ROOT  # noqa: E402
from rl_advkd.profiles import load_profile  # noqa: E402
from rl_advkd.teachers import load_teacher, train_teacher  # noqa: E402

PENDULUM = "InvertedPendulum-v5"
SHIPPED_PENDULUM_TEACHER = SOURCE_ROOT / "agents" / PENDULUM / "teacher"


@pytest.fixture(scope="session")
def pendulum_teacher():
    """The shipped InvertedPendulum-v5 teacher, loaded frozen."""
    return load_teacher(SHIPPED_PENDULUM_TEACHER, PENDULUM)


@pytest.fixture(scope="session")
def tiny_hopper_teacher_dir(tmp_path_factory) -> Path:
    """A barely trained Hopper-v5 teacher (one PPO update), for tests about shapes and files."""
    out = tmp_path_factory.mktemp("hopper_teacher")
    profile = load_profile("Hopper-v5")
    profile.teacher.hyperparams.update({"n_steps": 256, "batch_size": 64, "n_epochs": 1})
    profile.teacher.hyperparams["policy_kwargs"] = {"net_arch": [16, 16]}
    profile.teacher.eval_episodes = 2
    train_teacher(profile, out, total_timesteps=256, seed=1, progress_bar=False)
    return out


def pendulum_states(count: int) -> np.ndarray:
    """Return ``count`` raw InvertedPendulum-v5 observations visited under uniformly random actions."""
    env = gym.make(PENDULUM)
    rng = np.random.default_rng(0)
    observations = []
    observation, _ = env.reset(seed=0)
    while len(observations) < count:
        observations.append(observation)
        observation, _, terminated, truncated, _ = env.step(rng.uniform(-3, 3, size=1))
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()
    return np.stack(observations)
