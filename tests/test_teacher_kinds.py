"""SAC, TQC, TD3 and DDPG teachers, teachers without VecNormalize, and the pre-flight checks."""

import json
import logging
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import DDPG, PPO, SAC, TD3
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from rl_advkd.cli import main
from rl_advkd.distill import TeacherOptions, run_distillation
from rl_advkd.distributions import gaussian_kl, teacher_student_divergence
from rl_advkd.errors import UsageError
from rl_advkd.profiles import DistillConfig, load_profile
from rl_advkd.teacher_loading import load_teacher
from conftest import PENDULUM, SHIPPED_PENDULUM_TEACHER

TINY = {"net_arch": [16, 16]}


def _observations(count: int, seed: int = 3) -> np.ndarray:
    env = gym.make(PENDULUM)
    obs, _ = env.reset(seed=seed)
    rows = []
    while len(rows) < count:
        rows.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + len(rows))
    env.close()
    return np.stack(rows)


@pytest.fixture(scope="module")
def off_policy_teachers(tmp_path_factory) -> dict[str, Path]:
    """Tiny SAC (raw observations) and TD3 (with VecNormalize) teachers on InvertedPendulum-v5."""
    out = tmp_path_factory.mktemp("off_policy")
    sac = SAC("MlpPolicy", PENDULUM, learning_starts=100, batch_size=64, policy_kwargs=dict(TINY), seed=0, device="cpu")
    sac.learn(600)
    sac.save(out / "sac.zip")

    venv = VecNormalize(make_vec_env(PENDULUM, n_envs=1, seed=0), norm_reward=False)
    td3 = TD3("MlpPolicy", venv, learning_starts=100, batch_size=64, policy_kwargs=dict(TINY), seed=0, device="cpu")
    td3.learn(600)
    td3.save(out / "td3.zip")
    venv.save(str(out / "td3_vecnormalize.pkl"))

    ddpg = DDPG("MlpPolicy", PENDULUM, learning_starts=100, batch_size=64, policy_kwargs=dict(TINY), seed=0, device="cpu")
    ddpg.learn(200)
    ddpg.save(out / "ddpg.zip")
    return {"sac": out / "sac.zip", "td3": out / "td3.zip", "td3_stats": out / "td3_vecnormalize.pkl", "ddpg": out / "ddpg.zip"}


def test_squashed_kl_matches_monte_carlo():
    # KL between two tanh-squashed Gaussians, estimated from samples with SB3's squashed log-probs.
    th.manual_seed(0)
    mean_t, log_std_t = th.tensor([[0.3, -0.5]]), th.tensor([[-0.7, -1.0]])
    mean_s, log_std_s = th.tensor([[0.1, -0.2]]), th.tensor([[-0.5, -0.8]])
    teacher = SquashedDiagGaussianDistribution(2).proba_distribution(mean_t, log_std_t)
    student = SquashedDiagGaussianDistribution(2).proba_distribution(mean_s, log_std_s)

    actions = th.tanh(mean_t + log_std_t.exp() * th.randn(200_000, 2))
    estimate = (teacher.log_prob(actions) - student.log_prob(actions)).mean()
    exact = gaussian_kl(mean_t, log_std_t, mean_s, log_std_s)
    assert estimate.item() == pytest.approx(exact.item(), rel=0.03)


def test_deterministic_kl_is_scaled_squared_error():
    th.manual_seed(1)
    sigma = 0.2
    mean_t, mean_s = th.randn(5, 3), th.randn(5, 3)
    log_sigma = th.full((5, 3), np.log(sigma))

    kl = teacher_student_divergence(mean_t, log_sigma, mean_s, log_sigma)
    np.testing.assert_allclose(kl, ((mean_t - mean_s) ** 2).sum(-1) / (2 * sigma**2), rtol=1e-5)

    # And a Monte-Carlo estimate with torch's Normal agrees when the student's std differs.
    log_std_s = th.full((1, 3), np.log(0.3))
    samples = mean_t[:1] + sigma * th.randn(200_000, 3)
    teacher_normal = th.distributions.Normal(mean_t[:1], sigma)
    student_normal = th.distributions.Normal(mean_s[:1], log_std_s.exp())
    estimate = (teacher_normal.log_prob(samples) - student_normal.log_prob(samples)).sum(-1).mean()
    exact = gaussian_kl(mean_t[:1], log_sigma[:1], mean_s[:1], log_std_s)
    assert estimate.item() == pytest.approx(exact.item(), rel=0.03)


def test_sac_teacher_acts_like_sb3(off_policy_teachers):
    teacher = load_teacher(off_policy_teachers["sac"], PENDULUM, raw_observations=True)
    assert teacher.head == "squashed"
    assert teacher.raw_input
    raw = _observations(100)

    expected, _ = SAC.load(off_policy_teachers["sac"], device="cpu").predict(raw, deterministic=True)
    np.testing.assert_allclose(teacher.act(raw), expected, atol=1e-5)


def test_td3_teacher_acts_like_sb3(off_policy_teachers):
    teacher = load_teacher(off_policy_teachers["td3"], PENDULUM, vecnormalize=off_policy_teachers["td3_stats"])
    assert teacher.head == "deterministic"
    assert not teacher.raw_input
    stats = VecNormalize.load(str(off_policy_teachers["td3_stats"]), make_vec_env(PENDULUM, n_envs=1))
    stats.training = False
    raw = _observations(100)

    expected, _ = TD3.load(off_policy_teachers["td3"], device="cpu").predict(stats.normalize_obs(raw), deterministic=True)
    np.testing.assert_allclose(teacher.act(raw), expected, atol=1e-5)
    # The deterministic head is a Gaussian of fixed std: 0.1 of half the range (3 N) here.
    _, log_std = teacher.gaussian(th.zeros(1, 4))
    np.testing.assert_allclose(log_std.exp(), 0.3, rtol=1e-6)


def test_ddpg_teacher_loads_as_deterministic(off_policy_teachers):
    teacher = load_teacher(off_policy_teachers["ddpg"], PENDULUM, raw_observations=True, algo="ddpg")
    raw = _observations(20)
    expected, _ = DDPG.load(off_policy_teachers["ddpg"], device="cpu").predict(raw, deterministic=True)
    np.testing.assert_allclose(teacher.act(raw), expected, atol=1e-5)


def test_tqc_teacher_acts_like_sb3_contrib(tmp_path):
    tqc_module = pytest.importorskip("sb3_contrib")
    model = tqc_module.TQC("MlpPolicy", PENDULUM, learning_starts=50, batch_size=32, policy_kwargs=dict(TINY), seed=0)
    model.learn(150)
    model.save(tmp_path / "tqc.zip")

    teacher = load_teacher(tmp_path / "tqc.zip", PENDULUM, raw_observations=True)
    raw = _observations(50)
    expected, _ = tqc_module.TQC.load(tmp_path / "tqc.zip", device="cpu").predict(raw, deterministic=True)
    assert teacher.head == "squashed"
    np.testing.assert_allclose(teacher.act(raw), expected, atol=1e-5)


def _tiny_distill(run_dir: Path, *extra: str) -> list[str]:
    return [
        "distill", "--env", PENDULUM, "--run-dir", str(run_dir),
        "--total-timesteps", "512", "--n-envs", "2", "--n-steps", "128", "--batch-size", "64",
        "--n-epochs", "1", "--net-arch", "8,8", "--pgd-steps", "2", "--eval-episodes", "2",
        "--preflight-episodes", "1", "--stats-steps", "500", *extra,
    ]  # fmt: skip


def test_sac_teacher_without_vecnormalize_distills(off_policy_teachers, tmp_path, capsys):
    run_dir = tmp_path / "sac_run"
    code = main(_tiny_distill(run_dir, "--teacher", str(off_policy_teachers["sac"]), "--raw-observations"))
    assert code == 0
    out = capsys.readouterr().out
    assert "pre-flight | teacher return, deterministic" in out
    assert "pre-flight | teacher return, stochastic" in out

    # The estimated statistics are saved in the run folder and inside the student.
    estimated = json.loads((run_dir / "normalization.json").read_text())
    with zipfile.ZipFile(run_dir / "student.zip") as archive:
        data = json.loads(archive.read("data"))
    assert data["normalization"]["mean"] == pytest.approx(estimated["mean"])
    assert data["squash_actions"] is True
    results = json.loads((run_dir / "results.json").read_text())
    assert results["total_timesteps"] == 512

    # The student evaluates with them, and its actions stay inside the bounds through the squash.
    from rl_advkd.cli_distill import load_policy

    student = load_policy(run_dir / "student.zip", PENDULUM)
    np.testing.assert_allclose(student.normalizer.mean, estimated["mean"])
    actions = student.act(_observations(50) * 100.0)
    assert np.all(np.abs(actions) <= 3.0)


def test_td3_teacher_with_vecnormalize_distills(off_policy_teachers, tmp_path):
    run_dir = tmp_path / "td3_run"
    argv = _tiny_distill(
        run_dir, "--teacher", str(off_policy_teachers["td3"]), "--vecnormalize", str(off_policy_teachers["td3_stats"])
    )
    assert main(argv) == 0
    assert not (run_dir / "normalization.json").exists()
    with zipfile.ZipFile(run_dir / "student.zip") as archive:
        data = json.loads(archive.read("data"))
    assert data["squash_actions"] is False


def test_bare_zip_needs_statistics_choice(off_policy_teachers, tmp_path, capsys):
    code = main(_tiny_distill(tmp_path / "run", "--teacher", str(off_policy_teachers["sac"])))
    assert code == 2
    message = capsys.readouterr().err
    assert "missing normalization statistics" in message
    assert "--vecnormalize PATH" in message
    assert "--raw-observations" in message
    assert not (tmp_path / "run").exists()


def test_low_teacher_return_stops_before_training(tmp_path, capsys):
    argv = _tiny_distill(tmp_path / "run", "--teacher", str(SHIPPED_PENDULUM_TEACHER), "--min-teacher-return", "5000")
    assert main(argv) == 2
    message = capsys.readouterr().err
    assert "deterministic return 1000.0 is below --min-teacher-return 5000" in message
    assert not (tmp_path / "run").exists()


def test_shape_mismatch_names_both_shapes(off_policy_teachers):
    with pytest.raises(UsageError) as error:
        load_teacher(off_policy_teachers["sac"], "Hopper-v5", raw_observations=True)
    assert "(4,)" in str(error.value)
    assert "(11,)" in str(error.value)


def test_bounds_only_difference_warns(tmp_path, caplog):
    # A teacher trained with actions rescaled to [-1, 1] on a task whose bounds are ±3.
    def make_env():
        return gym.wrappers.RescaleAction(gym.make(PENDULUM), -1.0, 1.0)

    venv = VecNormalize(make_vec_env(make_env, n_envs=1, seed=0))
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=dict(TINY), seed=0, device="cpu")
    model.learn(64)
    model.save(tmp_path / "model.zip")
    venv.save(str(tmp_path / "vecnormalize.pkl"))

    with caplog.at_level(logging.WARNING):
        teacher = load_teacher(tmp_path, PENDULUM)
    assert teacher.head == "gaussian"
    assert any("bounds" in record.getMessage() for record in caplog.records)


def test_env_mismatch_rejected_then_tagged(tmp_path):
    with pytest.raises(UsageError, match="trained on InvertedPendulum-v5, not InvertedPendulum-v4.*--allow-env-mismatch"):
        load_teacher(SHIPPED_PENDULUM_TEACHER, "InvertedPendulum-v4")

    profile = load_profile(PENDULUM)
    profile.env_id = "InvertedPendulum-v4"
    config = DistillConfig(
        total_timesteps=256, n_envs=2, n_steps=128, batch_size=128, n_epochs=1, net_arch=[8], eval_episodes=1,
        eval_attacks=["natural"], preflight_episodes=0, pgd_steps=1,
    )  # fmt: skip
    options = TeacherOptions(path=str(SHIPPED_PENDULUM_TEACHER), allow_env_mismatch=True)
    record = run_distillation(profile, config, tmp_path / "run", progress_bar=False, teacher_options=options)
    assert record["tags"] == ["teacher trained on InvertedPendulum-v5, used on InvertedPendulum-v4"]
    assert "Tagged: teacher trained on InvertedPendulum-v5" in (tmp_path / "run" / "results.md").read_text()


def test_rl_zoo_folder_loads_with_statistics(pendulum_teacher, tmp_path):
    from test_safe_loading import _write_zoo_run

    folder = _write_zoo_run(
        tmp_path / "ppo" / f"{PENDULUM}_1",
        PENDULUM,
        SHIPPED_PENDULUM_TEACHER / "model.zip",
        SHIPPED_PENDULUM_TEACHER / "vecnormalize.pkl",
    )
    teacher = load_teacher(folder, PENDULUM)
    assert teacher.info["layout"] == "rl_zoo"
    assert teacher.info["vecnormalize"] == str(folder / PENDULUM / "vecnormalize.pkl")
    np.testing.assert_array_equal(teacher.normalizer.mean, pendulum_teacher.normalizer.mean)
    raw = _observations(50)
    np.testing.assert_allclose(teacher.act(raw), pendulum_teacher.act(raw), atol=1e-6)


def test_crafted_teacher_runs_no_code_unless_trusted(pendulum_teacher, tmp_path):
    import base64
    import pickle
    import shutil

    from test_safe_loading import _BoxThatTouchesFile, _rewrite_data

    marker = tmp_path / "created_by_unpickling"
    space = gym.make(PENDULUM).observation_space

    def replace_observation_space(data):
        data["observation_space"][":serialized:"] = base64.b64encode(
            pickle.dumps(_BoxThatTouchesFile(space, marker))
        ).decode()

    folder = tmp_path / "teacher"
    folder.mkdir()
    _rewrite_data(SHIPPED_PENDULUM_TEACHER / "model.zip", folder / "model.zip", replace_observation_space)
    shutil.copy(SHIPPED_PENDULUM_TEACHER / "vecnormalize.pkl", folder / "vecnormalize.pkl")
    shutil.copy(SHIPPED_PENDULUM_TEACHER / "provenance.json", folder / "provenance.json")

    teacher = load_teacher(folder, PENDULUM)
    assert not marker.exists()
    assert teacher.info["load_mode"] == "safe (weights only)"
    raw = _observations(50)
    np.testing.assert_allclose(teacher.act(raw), pendulum_teacher.act(raw), atol=1e-6)

    trusted = load_teacher(folder, PENDULUM, trust=True)
    assert marker.exists()
    assert trusted.info["load_mode"] == "trusted (SB3 full load)"


@pytest.mark.parametrize("trust", [False, True])
def test_reward_only_vecnormalize_estimates_statistics(off_policy_teachers, tmp_path, trust):
    # A VecNormalize that scales rewards only has no observation statistics to read.
    stats = VecNormalize(make_vec_env(PENDULUM, n_envs=1), norm_obs=False, norm_reward=True)
    stats.save(str(tmp_path / "vecnormalize.pkl"))

    teacher = load_teacher(
        off_policy_teachers["sac"], PENDULUM, vecnormalize=tmp_path / "vecnormalize.pkl", trust=trust, stats_steps=500
    )
    assert teacher.raw_input
    assert teacher.info["statistics"] == "estimated from 500 steps of teacher rollouts"
    assert teacher.info["reward_scale"] == pytest.approx(np.sqrt(1.0 + 1e-8))
    raw = _observations(20)
    expected, _ = SAC.load(off_policy_teachers["sac"], device="cpu").predict(raw, deterministic=True)
    np.testing.assert_allclose(teacher.act(raw), expected, atol=1e-5)
