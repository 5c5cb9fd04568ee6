"""Alternating training of the student and the force adversary inside distillation."""

import numpy as np
from stable_baselines3.common.logger import configure

from rl_advkd.adversaries import ForcePerturbation
from rl_advkd.adversaries.rarl import AdversarySlot, AlternatingAdversaryCallback, make_adversary
from rl_advkd.distill import build_student
from rl_advkd.profiles import DistillConfig
from conftest import PENDULUM

TINY = DistillConfig(total_timesteps=1024, n_envs=2, n_steps=128, batch_size=128, n_epochs=1, net_arch=[16, 16])


def _student_with_adversary(pendulum_teacher, every: int, steps: int):
    perturbation = ForcePerturbation(["pole"], 5.0, "x")
    slot = AdversarySlot(action_dim=1)
    student = build_student(TINY, pendulum_teacher, PENDULUM, epsilon=0.3, force=(perturbation, slot))
    adversary = make_adversary(student, PENDULUM, perturbation, seed=1, n_steps=256, batch_size=64)
    slot.model = adversary
    return student, adversary, slot, AlternatingAdversaryCallback(adversary, every=every, steps=steps)


def test_adversary_trains_every_k_iterations(pendulum_teacher, tmp_path):
    student, adversary, _, callback = _student_with_adversary(pendulum_teacher, every=2, steps=256)
    student.set_logger(configure(str(tmp_path), ["csv"]))
    student.learn(TINY.total_timesteps, callback=callback)

    # 1024 steps in rollouts of 2 x 128 make 4 student iterations, so 2 adversary phases.
    assert callback.iterations == 4
    assert callback.phases == 2
    assert adversary.num_timesteps == 2 * 256
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert "adversary/total_timesteps" in header


def test_student_envs_apply_adversary_pushes(pendulum_teacher):
    student, _, slot, _ = _student_with_adversary(pendulum_teacher, every=1, steps=64)
    venv = student.get_env()
    venv.reset()
    _, _, _, infos = venv.step(np.zeros((TINY.n_envs, 1), dtype=np.float32))
    pushes = np.array([info["adversary_action"] for info in infos])
    assert pushes.shape == (TINY.n_envs, 1)
    assert np.all(np.abs(pushes) <= 1.0)

    slot.enabled = False
    venv.reset()
    _, _, _, infos = venv.step(np.zeros((TINY.n_envs, 1), dtype=np.float32))
    assert all(np.all(info["adversary_action"] == 0.0) for info in infos)
