"""Teacher loading: same actions as SB3, frozen statistics, clear errors."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from rl_advkd.errors import UsageError
from rl_advkd.evaluation import evaluate_policy
from rl_advkd.profiles import DistillConfig
from rl_advkd.provenance import file_sha256
from rl_advkd.teachers import load_teacher
from conftest import PENDULUM, SHIPPED_PENDULUM_TEACHER


def _raw_observations(env_id: str, count: int) -> np.ndarray:
    env = gym.make(env_id)
    rng = np.random.default_rng(1)
    observation, _ = env.reset(seed=1)
    observations = []
    while len(observations) < count:
        observations.append(observation)
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            observation, _ = env.reset(seed=int(rng.integers(1000)))
    return np.stack(observations)


def test_actions_match_sb3_load(pendulum_teacher):
    model = PPO.load(SHIPPED_PENDULUM_TEACHER / "model.zip", device="cpu")
    stats = VecNormalize.load(str(SHIPPED_PENDULUM_TEACHER / "vecnormalize.pkl"), make_vec_env(PENDULUM, n_envs=1))
    stats.training = False
    raw = _raw_observations(PENDULUM, 200)

    expected, _ = model.predict(stats.normalize_obs(raw), deterministic=True)
    actions = pendulum_teacher.act(raw)
    np.testing.assert_allclose(actions, expected, atol=1e-6)


def test_statistics_are_read_only(pendulum_teacher):
    with pytest.raises(ValueError, match="read-only"):
        pendulum_teacher.normalizer.mean[0] = 1.0


def test_statistics_unchanged_by_distillation_and_evaluation(tmp_path):
    from rl_advkd.distill import build_student

    stats_file = SHIPPED_PENDULUM_TEACHER / "vecnormalize.pkl"
    digest_before = file_sha256(stats_file)
    teacher = load_teacher(SHIPPED_PENDULUM_TEACHER, PENDULUM)
    mean_before = teacher.normalizer.mean.copy()
    var_before = teacher.normalizer.var.copy()
    count_before = teacher.normalizer.count

    config = DistillConfig(total_timesteps=512, n_envs=2, n_steps=128, batch_size=128, n_epochs=1)
    student = build_student(config, teacher, PENDULUM, epsilon=0.3)
    student.learn(512)
    evaluate_policy(teacher, PENDULUM, ["natural", "mad"], 0.3, episodes=2, show_progress=False)
    evaluate_policy(student.as_frozen_policy(), PENDULUM, ["random"], 0.3, episodes=2, show_progress=False)

    np.testing.assert_array_equal(teacher.normalizer.mean, mean_before)
    np.testing.assert_array_equal(teacher.normalizer.var, var_before)
    assert teacher.normalizer.count == count_before
    np.testing.assert_array_equal(student.normalizer.mean, mean_before)
    assert file_sha256(stats_file) == digest_before


def test_teacher_for_other_env_names_both_shapes():
    with pytest.raises(UsageError, match=r"\(4,\).*\(11,\)"):
        load_teacher(SHIPPED_PENDULUM_TEACHER, "Hopper-v5")


def test_missing_statistics_rejected(tmp_path):
    (tmp_path / "model.zip").write_bytes((SHIPPED_PENDULUM_TEACHER / "model.zip").read_bytes())
    with pytest.raises(UsageError, match="missing normalization statistics.*vecnormalize.pkl"):
        load_teacher(tmp_path, PENDULUM)


def test_trained_teacher_folder_is_complete(tiny_hopper_teacher_dir):
    names = {path.name for path in tiny_hopper_teacher_dir.iterdir()}
    assert {"model.zip", "vecnormalize.pkl", "provenance.json", "logs"} <= names
    teacher = load_teacher(tiny_hopper_teacher_dir, "Hopper-v5")
    provenance = teacher.info["provenance"]
    assert provenance["env_id"] == "Hopper-v5"
    assert provenance["total_timesteps"] == 256
    assert provenance["evaluation"]["episodes"] == 2
    assert provenance["model_sha256"] == teacher.info["sha256"]
    assert "stable-baselines3" in provenance["versions"]


def test_a2c_teacher_distills(tmp_path):
    from stable_baselines3 import A2C

    from rl_advkd.distill import build_student

    venv = VecNormalize(make_vec_env(PENDULUM, n_envs=1, seed=0))
    teacher_model = A2C("MlpPolicy", venv, n_steps=16, seed=0, policy_kwargs={"net_arch": [32, 32]})
    teacher_model.learn(256)
    teacher_model.save(tmp_path / "model.zip")
    venv.save(str(tmp_path / "vecnormalize.pkl"))

    teacher = load_teacher(tmp_path, PENDULUM, algo="a2c")
    raw = _raw_observations(PENDULUM, 50)
    expected, _ = teacher_model.predict(venv.normalize_obs(raw), deterministic=True)
    np.testing.assert_allclose(teacher.act(raw), expected, atol=1e-6)

    config = DistillConfig(total_timesteps=256, n_envs=2, n_steps=128, batch_size=128, n_epochs=1)
    student = build_student(config, teacher, PENDULUM, epsilon=0.3)
    student.learn(config.total_timesteps)
    assert student.num_timesteps == 256
