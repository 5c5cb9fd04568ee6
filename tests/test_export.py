"""Exported policies: parity with SB3's predict, the torch-free runtime, metadata and the play command."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnx
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy

from rl_advkd import AdvKD, __version__
from rl_advkd.cli import main
from rl_advkd.deploy import OnnxPolicy
from rl_advkd.distill import build_student
from rl_advkd.evaluation import evaluate_policy, results_record, write_results
from rl_advkd.export import METADATA_KEY, export_onnx, load_torchscript, policy_metadata
from rl_advkd.normalization import ObservationNormalizer
from rl_advkd.policies import FrozenPolicy
from rl_advkd.profiles import DistillConfig
from conftest import PENDULUM, SHIPPED_PENDULUM_TEACHER

TINY = DistillConfig(total_timesteps=512, n_envs=2, n_steps=128, batch_size=128, n_epochs=2, net_arch=[16, 16])
STUDENT_EPSILON = 0.3


@pytest.fixture(scope="module")
def student_zip(pendulum_teacher, tmp_path_factory) -> Path:
    """A tiny student in a run folder, with a results.json of one natural episode next to it."""
    run_dir = tmp_path_factory.mktemp("run")
    student = build_student(TINY, pendulum_teacher, PENDULUM, epsilon=STUDENT_EPSILON)
    student.learn(TINY.total_timesteps)
    # SB3 initializes the action head with gain 0.01, so a briefly trained student never reaches
    # the bounds of ±3. A larger head makes the action clip inside the graph matter.
    with th.no_grad():
        student.policy.action_net.weight.mul_(1000.0)
    student.save(run_dir / "student.zip")

    frozen = student.as_frozen_policy()
    frozen.path = run_dir / "student.zip"
    evaluated = evaluate_policy(frozen, PENDULUM, ["natural"], STUDENT_EPSILON, episodes=2, show_progress=False)
    write_results(results_record(PENDULUM, STUDENT_EPSILON, 2, 0, [evaluated]), run_dir / "results.json")
    return run_dir / "student.zip"


@pytest.fixture(scope="module")
def exported_student(student_zip) -> dict[str, Path]:
    """The tiny student exported through the command line in both formats."""
    paths = {"onnx": student_zip.with_suffix(".onnx"), "torchscript": student_zip.with_suffix(".pt")}
    for fmt, path in paths.items():
        assert main(["export", "--policy", str(student_zip), "--format", fmt, "--out", str(path)]) == 0
    return paths


@pytest.fixture(scope="module")
def exported_teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "teacher.onnx"
    assert main(["export", "--policy", str(SHIPPED_PENDULUM_TEACHER), "--out", str(out)]) == 0
    return out


def parity_observations(student: AdvKD) -> np.ndarray:
    """1,000 raw observations: typical ones, ones near the normalization clip, and ones far outside (±1e3)."""
    rng = np.random.default_rng(0)
    mean = student.normalizer.mean
    std = np.sqrt(student.normalizer.var)
    typical = mean + std * rng.normal(size=(400, 4)) * 2.0
    near_clip = mean + std * rng.normal(size=(200, 4)) * 10.0
    far = rng.uniform(-1e3, 1e3, size=(300, 4))
    extreme = 1e3 * rng.choice([-1.0, 1.0], size=(100, 4))
    return np.concatenate([typical, near_clip, far, extreme])


def run_exported(fmt: str, path: Path, obs: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        return OnnxPolicy(path).predict(obs)
    module, _ = load_torchscript(path)
    with th.no_grad():
        return module(th.as_tensor(obs)).numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_actions_match_predict(student_zip, exported_student, fmt, dtype):
    student = AdvKD.load(student_zip, device="cpu")
    obs = parity_observations(student).astype(dtype)
    expected, _ = student.predict(obs, deterministic=True)

    actions = run_exported(fmt, exported_student[fmt], obs)

    assert actions.shape == (1000, 1)
    assert actions.dtype == np.float32
    np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-5)
    # The observation set reaches both the action bounds and the range between them.
    assert np.isclose(np.abs(expected), 3.0).any()
    assert (np.abs(expected) < 2.9).any()


@pytest.mark.parametrize("activation", [th.nn.ReLU, th.nn.ELU, th.nn.LeakyReLU, th.nn.Sigmoid])
def test_onnx_activations_and_bounds(activation, tmp_path):
    # Per-dimension action bounds take the Max and Min path of the graph instead of one Clip.
    observation_space = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float64)
    action_space = spaces.Box(np.array([-1.0, -2.0], dtype=np.float32), np.array([1.0, 0.5], dtype=np.float32))
    sb3_policy = ActorCriticPolicy(
        observation_space, action_space, lambda _: 0.0, net_arch=[8, 8], activation_fn=activation
    )
    with th.no_grad():
        sb3_policy.action_net.weight.mul_(300.0)
    normalizer = ObservationNormalizer(mean=np.array([0.5, -1.0, 2.0]), var=np.array([0.1, 4.0, 1.0]), clip_obs=5.0)
    frozen = FrozenPolicy(sb3_policy, normalizer, env_id="custom")
    path = export_onnx(frozen, tmp_path / "policy.onnx", policy_metadata(frozen, "teacher", None, None, None))
    obs = np.random.default_rng(2).normal(size=(500, 3)) * 10.0

    actions = OnnxPolicy(path).predict(obs)

    np.testing.assert_allclose(actions, frozen.act(obs), rtol=0, atol=1e-5)
    at_bound = np.isclose(actions, action_space.low) | np.isclose(actions, action_space.high)
    assert at_bound.any()


def test_deploy_runs_without_torch(exported_student):
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "from rl_advkd.deploy import OnnxPolicy\n"
        f"policy = OnnxPolicy({str(exported_student['onnx'])!r})\n"
        "action = policy.predict(np.zeros(4))\n"
        "print(json.dumps({'action': action.tolist(), 'loaded': [m for m in ('torch', 'stable_baselines3') if m in sys.modules]}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["loaded"] == []
    assert len(output["action"]) == 1


def test_runtime_single_observation(exported_student):
    policy = OnnxPolicy(exported_student["onnx"])
    batch = np.random.default_rng(1).normal(size=(5, 4))

    single = policy.predict(batch[2])

    assert single.shape == (1,)
    np.testing.assert_array_equal(single, policy.predict(batch)[2])


def test_runtime_rejects_wrong_shape(exported_student):
    policy = OnnxPolicy(exported_student["onnx"])
    with pytest.raises(ValueError, match=re.escape("expects an observation of shape (4,)")) as error:
        policy.predict(np.zeros(5))
    assert "got shape (5,)" in str(error.value)
    with pytest.raises(ValueError, match=re.escape("got shape (3, 5)")):
        policy.predict(np.zeros((3, 5)))


def test_runtime_rejects_integer_dtype(exported_student):
    policy = OnnxPolicy(exported_student["onnx"])
    with pytest.raises(ValueError, match="expects float32 or float64 observations, got int64"):
        policy.predict(np.zeros(4, dtype=np.int64))


def test_metadata_round_trip(student_zip, exported_student, pendulum_teacher):
    metadata = OnnxPolicy(exported_student["onnx"]).metadata

    assert metadata["env_id"] == PENDULUM
    assert metadata["epsilon"] == STUDENT_EPSILON
    assert metadata["policy"] == "student"
    assert metadata["teacher_sha256"] == pendulum_teacher.info["sha256"]
    assert metadata["rl_advkd_version"] == __version__
    assert metadata["observation_space"]["shape"] == [4]
    assert metadata["observation_space"]["low"] == ["-inf"] * 4
    assert metadata["action_space"] == {"shape": [1], "dtype": "float32", "low": [-3.0], "high": [3.0]}

    results = json.loads((student_zip.parent / "results.json").read_text())
    natural = metadata["evaluation"]["rows"][0]
    assert natural["attack"] == "natural"
    assert natural["mean"] == results["policies"][0]["rows"][0]["mean"]


def test_metadata_in_onnx_props_and_torchscript(exported_student):
    props = {prop.key: prop.value for prop in onnx.load(exported_student["onnx"]).metadata_props}
    onnx_metadata = json.loads(props[METADATA_KEY])
    _, torchscript_metadata = load_torchscript(exported_student["torchscript"])

    assert onnx_metadata["env_id"] == PENDULUM
    assert torchscript_metadata["env_id"] == PENDULUM
    assert torchscript_metadata["epsilon"] == onnx_metadata["epsilon"]


def test_teacher_export_has_no_epsilon(exported_teacher, pendulum_teacher):
    metadata = OnnxPolicy(exported_teacher).metadata

    assert metadata["policy"] == "teacher"
    assert metadata["epsilon"] is None
    assert metadata["teacher_sha256"] == pendulum_teacher.info["sha256"]
    assert metadata["evaluation"] is None


def test_play_exported_teacher_reaches_recorded_return(exported_teacher, capsys):
    recorded = json.loads((SHIPPED_PENDULUM_TEACHER / "provenance.json").read_text())["evaluation"]["mean_return"]

    code = main(["play", "--policy", str(exported_teacher), "--env", PENDULUM, "--episodes", "2", "--seed", "0"])

    output = capsys.readouterr().out
    assert code == 0
    mean = float(re.search(r"mean return over 2 episodes: (-?[\d.]+)", output).group(1))
    assert mean == pytest.approx(recorded, abs=0.05)


def test_play_shipped_student_reaches_recorded_return(capsys):
    shipped = SHIPPED_PENDULUM_TEACHER.parent / "student"
    results = json.loads((shipped / "results.json").read_text())
    student = next(policy for policy in results["policies"] if policy["name"] == "student")
    recorded = student["rows"][0]["mean"]

    code = main(["play", "--policy", str(shipped / "student.onnx"), "--episodes", "3", "--seed", "0"])

    output = capsys.readouterr().out
    assert code == 0
    mean = float(re.search(r"mean return over 3 episodes: (-?[\d.]+)", output).group(1))
    assert mean == pytest.approx(recorded, abs=0.05)


def test_play_mad_needs_zip(exported_teacher, capsys):
    code = main(["play", "--policy", str(exported_teacher), "--episodes", "1", "--attack", "mad"])

    assert code == 2
    assert "--attack mad needs the policy's gradients" in capsys.readouterr().err


def test_play_zip_under_mad(student_zip, capsys):
    code = main(["play", "--policy", str(student_zip), "--episodes", "1", "--attack", "mad"])

    output = capsys.readouterr().out
    assert code == 0
    assert f"mad attack, ε={STUDENT_EPSILON:g}" in output
    assert "mean return over 1 episode:" in output


def render_error() -> str | None:
    """Return why MuJoCo cannot render here, or ``None`` when it can."""
    try:
        env = gym.make(PENDULUM, render_mode="rgb_array")
        env.reset(seed=0)
        frame = env.render()
        env.close()
    except Exception as error:  # noqa: BLE001 - any backend failure means no video on this machine
        return f"{type(error).__name__}: {error}"
    return None if frame is not None else "render() returned no frame"


def test_play_video_writes_mp4(exported_student, tmp_path, capsys):
    reason = render_error()
    if reason is not None:
        pytest.skip(f"no MuJoCo render backend works here (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {reason}")
    video = tmp_path / "play.mp4"

    code = main(["play", "--policy", str(exported_student["onnx"]), "--episodes", "1", "--video", str(video)])

    assert code == 0
    assert f"video written to {video}" in capsys.readouterr().out
    assert video.stat().st_size > 0


def test_export_rejects_suffix_of_other_format(student_zip, tmp_path, capsys):
    code = main(["export", "--policy", str(student_zip), "--format", "torchscript", "--out", str(tmp_path / "a.onnx")])

    assert code == 2
    assert "has the suffix of onnx, not torchscript" in capsys.readouterr().err
