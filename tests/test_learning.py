"""Learning test with an explicit budget: distillation of the shipped InvertedPendulum-v5 teacher."""

import pytest

from rl_advkd.distill import build_student
from rl_advkd.evaluation import run_episodes
from rl_advkd.profiles import DistillConfig
from conftest import PENDULUM

BUDGET = 16_384  # environment steps; the student usually reaches 1,000 after about 4,000


@pytest.mark.slow
def test_pendulum_student_reaches_950(pendulum_teacher):
    config = DistillConfig(total_timesteps=BUDGET, n_envs=4, n_steps=512, batch_size=256, seed=3)
    student = build_student(config, pendulum_teacher, PENDULUM, epsilon=0.3)
    student.learn(config.total_timesteps)

    row = run_episodes(student.as_frozen_policy(), PENDULUM, "natural", 0.0, episodes=10, seed=100, show_progress=False)
    assert row.mean >= 950, row.returns
