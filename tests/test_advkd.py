"""The AdvKD algorithm: save and load round trip, raw-observation predict, loss bookkeeping."""

import numpy as np
import pytest

from rl_advkd import AdvKD
from rl_advkd.distill import build_student
from rl_advkd.profiles import DistillConfig
from conftest import PENDULUM

TINY = DistillConfig(total_timesteps=512, n_envs=2, n_steps=128, batch_size=128, n_epochs=2, net_arch=[16, 16])


def test_save_load_round_trip(pendulum_teacher, tmp_path):
    student = build_student(TINY, pendulum_teacher, PENDULUM, epsilon=0.3)
    student.learn(TINY.total_timesteps)
    student.save(tmp_path / "student.zip")

    loaded = AdvKD.load(tmp_path / "student.zip", device="cpu")
    raw = np.random.default_rng(0).normal(size=(64, 4))
    expected, _ = student.predict(raw, deterministic=True)
    actions, _ = loaded.predict(raw, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    assert loaded.env_id == PENDULUM
    assert loaded.teacher_sha256 == pendulum_teacher.info["sha256"]
    np.testing.assert_array_equal(loaded.normalizer.mean, pendulum_teacher.normalizer.mean)


def test_predict_normalizes_raw_observations(pendulum_teacher):
    student = build_student(TINY, pendulum_teacher, PENDULUM, epsilon=0.3)
    raw = np.random.default_rng(1).normal(size=(8, 4))
    actions, _ = student.predict(raw, deterministic=True)
    frozen = student.as_frozen_policy()
    np.testing.assert_allclose(actions, frozen.act(raw), atol=1e-6)


def test_training_records_distillation_metrics(pendulum_teacher, tmp_path):
    from stable_baselines3.common.logger import configure

    student = build_student(TINY, pendulum_teacher, PENDULUM, epsilon=0.3)
    student.set_logger(configure(str(tmp_path), ["csv"]))
    student.learn(TINY.total_timesteps)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("train/kl_teacher", "train/kl_teacher_adv", "train/policy_gradient_loss", "train/value_loss"):
        assert key in header


def test_rollout_attack_fraction_is_respected(pendulum_teacher, tmp_path):
    from stable_baselines3.common.logger import configure

    config = DistillConfig(**{**TINY.__dict__, "attack_fraction": 0.25, "total_timesteps": 1024})
    student = build_student(config, pendulum_teacher, PENDULUM, epsilon=0.3)
    student.set_logger(configure(str(tmp_path), ["csv"]))
    student.learn(config.total_timesteps)
    lines = (tmp_path / "progress.csv").read_text().splitlines()
    column = lines[0].split(",").index("rollout/attacked_fraction")
    fractions = [float(line.split(",")[column]) for line in lines[1:]]
    assert np.mean(fractions) == pytest.approx(0.25, abs=0.05)


def test_invalid_parameters_rejected(pendulum_teacher):
    with pytest.raises(ValueError, match="epsilon must be >= 0, got -0.1"):
        build_student(TINY, pendulum_teacher, PENDULUM, epsilon=-0.1)
    with pytest.raises(ValueError, match="attack_fraction must be in"):
        build_student(DistillConfig(**{**TINY.__dict__, "attack_fraction": 1.5}), pendulum_teacher, PENDULUM, 0.3)
