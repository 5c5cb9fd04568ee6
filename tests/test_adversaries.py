"""Dynamics adversaries on real MuJoCo models: pushes, scaled models, zero-sum games and their evaluation rows."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.mujoco import MujocoEnv

from conftest import PENDULUM, SHIPPED_PENDULUM_TEACHER
from rl_advkd.adversaries import (
    AdversarialForce,
    ForcePerturbation,
    ModelPerturbation,
    ObservationPerturbation,
    ProtagonistEnv,
    RandomAdversary,
    ZeroSumEnv,
    policy_actor,
)
from rl_advkd.cli import main
from rl_advkd.errors import UsageError
from rl_advkd.evaluation import evaluate_policy, random_force_wrapper, run_episodes
from rl_advkd.profiles import AdversaryConfig, load_profile
from rl_advkd.teachers import load_teacher

# A 1 kg sphere free to move in zero gravity, and a second body whose rows of xfrc_applied
# belong to someone else. Contacts are off, so only the applied forces move the bodies.
TWO_BODY_XML = """
<mujoco>
  <option timestep="0.001" gravity="0 0 0"/>
  <worldbody>
    <body name="block">
      <freejoint/>
      <geom type="sphere" size="0.1" mass="1" contype="0" conaffinity="0"/>
    </body>
    <body name="other" pos="2 0 0">
      <freejoint/>
      <geom type="sphere" size="0.1" mass="1" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
</mujoco>
"""


class TwoBodyEnv(MujocoEnv):
    """The model above as a Gymnasium MuJoCo env: no actuators, observation = position of the block."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 100}

    def __init__(self, model_path: str):
        space = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float64)
        super().__init__(model_path, frame_skip=10, observation_space=space)

    def step(self, action):
        self.do_simulation(action, self.frame_skip)
        return self.data.body("block").xpos.copy(), 0.0, False, False, {}

    def reset_model(self):
        self.set_state(self.init_qpos, self.init_qvel)
        return self.data.body("block").xpos.copy()


@pytest.fixture
def two_body_env(tmp_path) -> TwoBodyEnv:
    path = tmp_path / "two_bodies.xml"
    path.write_text(TWO_BODY_XML)
    env = TwoBodyEnv(str(path))
    yield env
    env.close()


@pytest.fixture(scope="module")
def tiny_hopper_teacher(tiny_hopper_teacher_dir):
    return load_teacher(tiny_hopper_teacher_dir, "Hopper-v5")


def test_push_moves_free_body_by_half_meter(two_body_env):
    assert two_body_env.model.body("block").mass[0] == pytest.approx(1.0)
    assert two_body_env.dt == pytest.approx(0.01)
    env = AdversarialForce(two_body_env, ["block"], bound=1.0, axes="x")
    start, _ = env.reset(seed=0)

    # 1 N on 1 kg for 1 s from rest: x = a t² / 2 = 0.5 m.
    env.set_adversary_action(np.array([1.0]))
    for _ in range(100):
        position, *_ = env.step(np.zeros(0))

    assert position[0] - start[0] == pytest.approx(0.5, rel=0.05)
    assert abs(position[1] - start[1]) < 1e-9
    assert abs(position[2] - start[2]) < 1e-9


def test_push_rows_cleared_on_reset_and_disable(two_body_env):
    env = AdversarialForce(two_body_env, ["block"], bound=3.0, axes="xyz")
    xfrc = two_body_env.data.xfrc_applied
    block, other = two_body_env.model.body("block").id, two_body_env.model.body("other").id
    env.reset(seed=0)
    written = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    xfrc[other] = written

    env.set_adversary_action(np.array([1.0, -0.5, 0.25]))
    env.step(np.zeros(0))
    np.testing.assert_array_equal(xfrc[block], [3.0, -1.5, 0.75, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(xfrc[other], written)

    env.set_enabled(False)
    np.testing.assert_array_equal(xfrc[block], np.zeros(6))
    np.testing.assert_array_equal(xfrc[other], written)
    env.step(np.zeros(0))
    np.testing.assert_array_equal(xfrc[block], np.zeros(6))
    np.testing.assert_array_equal(xfrc[other], written)

    env.set_enabled(True)
    env.step(np.zeros(0))
    np.testing.assert_array_equal(xfrc[block], [3.0, -1.5, 0.75, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(xfrc[other], written)

    # MujocoEnv.reset clears all of data with mj_resetData, so only the wrapper's promise is
    # checked here: its rows are zero, and the old action is not applied again.
    env.reset(seed=1)
    np.testing.assert_array_equal(xfrc[block], np.zeros(6))
    xfrc[other] = written
    env.step(np.zeros(0))
    np.testing.assert_array_equal(xfrc[block], np.zeros(6))
    np.testing.assert_array_equal(xfrc[other], written)


def test_push_rejects_bad_arguments(two_body_env):
    with pytest.raises(ValueError, match="'wheel' is not a movable body"):
        AdversarialForce(two_body_env, ["wheel"], bound=1.0, axes="x")
    with pytest.raises(ValueError, match="invalid push axes"):
        AdversarialForce(two_body_env, ["block"], bound=1.0, axes="xw")
    with pytest.raises(ValueError, match="force bound"):
        AdversarialForce(two_body_env, ["block"], bound=-1.0, axes="x")
    env = AdversarialForce(two_body_env, ["block", "other"], bound=1.0, axes="xz")
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        env.set_adversary_action(np.zeros(3))


def test_push_uses_task_axes():
    hopper = AdversarialForce(gym.make("Hopper-v5"), ["torso", "foot"], bound=10.0)
    pendulum = AdversarialForce(gym.make(PENDULUM), ["pole"], bound=10.0)
    assert hopper.axes == "xz"
    assert hopper.adversary_action_space.shape == (4,)
    assert pendulum.axes == "x"
    assert pendulum.adversary_action_space.shape == (1,)


def test_mass_factor_does_not_compound():
    nominal = gym.make("Hopper-v5").unwrapped.model
    env = ModelPerturbation(
        gym.make("Hopper-v5"), mass_factor=1.5, friction_factor=0.5, bodies=["torso", "foot"], geoms=["foot_geom"]
    )
    model = env.unwrapped.model
    targets, others = [1, 4], [0, 2, 3]
    foot_geom, other_geoms = 4, [0, 1, 2, 3]
    assert [model.body(i).name for i in targets] == ["torso", "foot"]
    assert model.geom(foot_geom).name == "foot_geom"

    for seed in range(10):
        env.reset(seed=seed)
    np.testing.assert_array_equal(model.body_mass[targets], nominal.body_mass[targets] * 1.5)
    np.testing.assert_array_equal(model.body_inertia[targets], nominal.body_inertia[targets] * 1.5)
    np.testing.assert_array_equal(model.body_mass[others], nominal.body_mass[others])
    np.testing.assert_array_equal(model.body_inertia[others], nominal.body_inertia[others])
    np.testing.assert_array_equal(model.geom_friction[foot_geom], nominal.geom_friction[foot_geom] * 0.5)
    np.testing.assert_array_equal(model.geom_friction[other_geoms], nominal.geom_friction[other_geoms])
    # mj_setConst ran: the subtree mass of the world body is the new total mass.
    assert model.body_subtreemass[0] == pytest.approx(model.body_mass.sum())
    assert model.body_subtreemass[0] > nominal.body_subtreemass[0]

    env.set_factors(mass_factor=1.0, friction_factor=1.0)
    env.reset(seed=0)
    for name in ("body_mass", "body_inertia", "geom_friction", "body_subtreemass", "dof_invweight0"):
        assert np.array_equal(getattr(model, name), getattr(nominal, name)), name


def test_restore_gives_nominal_bits():
    nominal = gym.make(PENDULUM).unwrapped.model
    env = ModelPerturbation(gym.make(PENDULUM), mass_factor=0.75, friction_factor=1.25)
    env.reset(seed=0)
    model = env.unwrapped.model
    assert not np.array_equal(model.body_mass, nominal.body_mass)
    assert not np.array_equal(model.geom_friction, nominal.geom_friction)

    env.restore()
    for name in ("body_mass", "body_inertia", "geom_friction", "body_subtreemass"):
        assert np.array_equal(getattr(model, name), getattr(nominal, name)), name
    with pytest.raises(ValueError, match="mass_factor must be a finite number > 0"):
        env.set_factors(mass_factor=0.0)


@pytest.mark.parametrize(
    "perturbation",
    [ForcePerturbation(["torso"], 40.0), ObservationPerturbation(0.3)],
    ids=["force", "observation"],
)
def test_adversary_reward_is_minus_protagonist(perturbation, tiny_hopper_teacher):
    seed = 5
    game = ZeroSumEnv(gym.make("Hopper-v5"), tiny_hopper_teacher, perturbation)
    adversary = RandomAdversary(game.action_space, seed=seed)
    obs, _ = game.reset(seed=seed)
    adversary_rewards, victim_rewards = [], []
    for _ in range(300):
        obs, reward, terminated, truncated, info = game.step(adversary(obs))
        adversary_rewards.append(reward)
        victim_rewards.append(info["victim_reward"])
        if terminated or truncated:
            break

    # The same game seen by the protagonist, with the same adversary draws.
    view = ProtagonistEnv(gym.make("Hopper-v5"), perturbation, RandomAdversary(game.action_space))
    protagonist = policy_actor(tiny_hopper_teacher)
    obs, _ = view.reset(seed=seed)
    protagonist_rewards = []
    for _ in range(len(adversary_rewards)):
        obs, reward, terminated, truncated, _ = view.step(protagonist(obs))
        protagonist_rewards.append(reward)

    assert len(adversary_rewards) > 5
    assert np.std(protagonist_rewards) > 0.0
    np.testing.assert_array_equal(adversary_rewards, -np.array(protagonist_rewards))
    np.testing.assert_array_equal(victim_rewards, protagonist_rewards)
    assert terminated == (len(adversary_rewards) < 300)


def test_force_random_is_reproducible(pendulum_teacher):
    config = AdversaryConfig(bodies=["pole"], force_bound=14.0)

    def rollout(seed: int) -> tuple[np.ndarray, np.ndarray]:
        env = random_force_wrapper(config, PENDULUM)(gym.make(PENDULUM))
        obs, _ = env.reset(seed=seed)
        observations, pushes = [obs], []
        for _ in range(200):
            obs, _, terminated, truncated, info = env.step(pendulum_teacher.act(obs[None])[0])
            observations.append(obs)
            pushes.append(info["adversary_action"])
            if terminated or truncated:
                break
        return np.array(observations), np.array(pushes)

    first, second, other_seed = rollout(3), rollout(3), rollout(4)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[1][:10], other_seed[1][:10])
    assert np.all(np.abs(first[1]) <= 1.0)

    # Pushes follow each episode's seed, not the order in which envs run episodes.
    side_by_side = run_episodes(
        pendulum_teacher, PENDULUM, "natural", 0.0, 4, seed=3, n_envs=3, show_progress=False,
        wrap_env=random_force_wrapper(config, PENDULUM),
    )  # fmt: skip
    one_by_one = run_episodes(
        pendulum_teacher, PENDULUM, "natural", 0.0, 4, seed=3, n_envs=1, show_progress=False,
        wrap_env=random_force_wrapper(config, PENDULUM),
    )  # fmt: skip
    assert side_by_side.returns == one_by_one.returns


def test_trained_force_row(pendulum_teacher):
    config = AdversaryConfig(bodies=["pole"], force_bound=9.0)
    record = evaluate_policy(
        pendulum_teacher, PENDULUM, ["force"], 0.0, episodes=2, show_progress=False,
        adversary=config, adversary_steps=1024,
    )  # fmt: skip
    force, worst = record["rows"]
    assert force["attack"] == "force"
    assert force["adversary_steps"] == 1024
    assert force["force_bound"] == 9.0
    assert force["bodies"] == ["pole"]
    assert force["episodes"] == 2
    assert worst["attack"] == "worst"
    assert worst["mean"] == force["mean"]


def test_evaluate_writes_dynamics_rows(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "rl_advkd", "evaluate",
            "--policy", str(SHIPPED_PENDULUM_TEACHER), "--env", PENDULUM,
            "--attacks", "natural,force-random,mass", "--episodes", "2", "--out", str(out),
        ],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    config = load_profile(PENDULUM).adversary
    rows = json.loads(out.read_text())["policies"][0]["rows"]
    expected = ["natural", "force-random"] + ["mass"] * len(config.mass_factors) + ["mass-mean", "mass-min", "worst"]
    assert [row["attack"] for row in rows] == expected
    grid = [row for row in rows if row["attack"] == "mass"]
    assert [row["factor"] for row in grid] == config.mass_factors
    assert rows[1]["force_bound"] == config.force_bound
    assert rows[1]["epsilon"] == 0.0

    mass_mean, mass_min, worst = rows[-3:]
    assert mass_mean["mean"] == pytest.approx(np.mean([row["mean"] for row in grid]))
    assert mass_mean["episodes"] == 2 * len(grid)
    assert mass_min["mean"] == min(row["mean"] for row in grid)
    assert worst["mean"] == min(row["mean"] for row in rows[:-1])
    assert worst["worst_of"] in {"natural", "force-random", "mass", "mass-mean", "mass-min"}
    table = Path(out.with_suffix(".md")).read_text()
    assert f"| mass ×{config.mass_factors[0]:g} |" in table
    assert f"| force-random ({config.force_bound:g} N) |" in table


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("  force_bound: -1\n", "force_bound must be a finite number"),
        ("  strength: 3\n", r"unknown key\(s\) \['strength'\]"),
        ("  mass_factors: [0.5, 0]\n", "mass_factors must be a non-empty list of numbers > 0"),
        ("  bodies: pole\n", "bodies must be a list of body names"),
        ("  axes: xw\n", "axes must be a string of distinct x, y and z"),
        ("  axes: xx\n", "axes must be a string of distinct x, y and z"),
    ],
)
def test_profile_rejects_bad_adversary_section(tmp_path, section, message):
    path = tmp_path / "profile.yaml"
    path.write_text(f"env_id: {PENDULUM}\nepsilon: 0.3\nadversary:\n{section}")
    with pytest.raises(UsageError, match=message):
        load_profile(PENDULUM, path)


def test_evaluate_rejects_unknown_push_body(tmp_path, capsys):
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"env_id: {PENDULUM}\nepsilon: 0.3\nadversary:\n  bodies: [pol]\n  force_bound: 9.0\n")
    argv = [
        "evaluate", "--policy", str(SHIPPED_PENDULUM_TEACHER), "--env", PENDULUM, "--profile", str(profile),
        "--attacks", "natural,force-random", "--episodes", "1", "--out", str(tmp_path / "results.json"),
    ]  # fmt: skip
    assert main(argv) == 2
    message = capsys.readouterr().err
    assert "'pol' is not a movable body" in message
    assert "'pole'" in message
    assert not (tmp_path / "results.json").exists()


def test_push_body_names_match_profiles():
    for env_id in ("Hopper-v5", PENDULUM):
        config = load_profile(env_id).adversary
        env = AdversarialForce(gym.make(env_id), config.bodies, config.force_bound, config.axes)
        assert env.adversary_action_space.shape[0] == len(config.bodies) * len(env.axes)
        assert all(mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, name) > 0 for name in config.bodies)
