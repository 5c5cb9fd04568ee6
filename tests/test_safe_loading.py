"""Tests of rl_advkd.safe_loading against zips and pickles written by real SB3 models."""

import base64
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from rl_advkd.paths import SOURCE_ROOT
from rl_advkd.safe_loading import (
    UnsafePickleError,
    build_policy,
    find_zoo_run,
    read_model_zip,
    read_vecnormalize,
)

try:
    from sb3_contrib import TQC
except ImportError:
    # sb3-contrib is no dependency of rl_advkd, so the TQC cases run only where it is installed.
    TQC = None

ENV_ID = "Pendulum-v1"
HOPPER_TEACHER = SOURCE_ROOT / "agents" / "Hopper-v5" / "teacher"

ON_POLICY = {"n_steps": 64, "batch_size": 32, "n_epochs": 1}
OFF_POLICY = {"learning_starts": 50, "buffer_size": 1_000}

# Each case varies the kwargs that the safe path must read from the zip's JSON.
CASES = {
    "ppo": (
        PPO,
        {**ON_POLICY, "policy_kwargs": {"net_arch": [16, 16], "activation_fn": th.nn.ReLU, "log_std_init": -1.0}},
    ),
    "ppo_sde": (
        PPO,
        {
            **ON_POLICY,
            "use_sde": True,
            "policy_kwargs": {
                "net_arch": {"pi": [16], "vf": [8]},
                "log_std_init": -2.0,
                "full_std": False,
                "use_expln": True,
                "squash_output": True,
                "ortho_init": False,
            },
        },
    ),
    "a2c": (A2C, {"n_steps": 8, "policy_kwargs": {"net_arch": [16, 16]}}),
    "sac": (
        SAC,
        {**OFF_POLICY, "policy_kwargs": {"net_arch": [16, 16], "activation_fn": th.nn.ELU, "log_std_init": -1.5}},
    ),
    "td3": (TD3, {**OFF_POLICY, "policy_kwargs": {"net_arch": [16, 16]}}),
    "ddpg": (DDPG, {**OFF_POLICY, "policy_kwargs": {"net_arch": [16, 16]}}),
}
if TQC is not None:
    CASES["tqc"] = (
        TQC,
        {**OFF_POLICY, "use_sde": True, "policy_kwargs": {"net_arch": [16], "n_quantiles": 5, "n_critics": 3}},
    )
EXPECTED_FAMILY = {
    "ppo": "ppo",
    "ppo_sde": "ppo",
    "a2c": "ppo",
    "sac": "sac",
    "td3": "td3",
    "ddpg": "td3",
    "tqc": "tqc",
}


class _TouchFile:
    """Pickles as a call of ``Path.touch``, so unpickling it creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


class _BoxThatTouchesFile:
    """
    Pickles as the Box ``space`` whose seed argument is a :class:`_TouchFile`.

    Unpickling it returns an equal Box (``touch`` returns None, the default seed) and creates the file.
    """

    def __init__(self, space: gym.spaces.Box, path: Path) -> None:
        self.space = space
        self.path = path

    def __reduce__(self):
        space = self.space
        return type(space), (space.low, space.high, space.shape, space.dtype, _TouchFile(self.path))


@pytest.fixture(scope="module")
def env() -> gym.Env:
    return gym.make(ENV_ID)


@pytest.fixture(scope="module")
def observations(env) -> np.ndarray:
    env.observation_space.seed(0)
    return np.stack([env.observation_space.sample() for _ in range(100)])


@pytest.fixture(scope="module")
def model_zips(tmp_path_factory) -> dict[str, Path]:
    """A zip per case, each trained for 128 steps on one thread."""
    threads = th.get_num_threads()
    th.set_num_threads(1)
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    try:
        for name, (algorithm, kwargs) in CASES.items():
            model = algorithm("MlpPolicy", ENV_ID, seed=0, device="cpu", **kwargs)
            model.learn(128)
            paths[name] = folder / f"{name}.zip"
            model.save(paths[name])
    finally:
        th.set_num_threads(threads)
    return paths


def _rewrite_data(source: Path, target: Path, edit) -> Path:
    """Copy a model zip, passing its parsed ``data`` JSON through ``edit``."""
    with zipfile.ZipFile(source) as archive_in, zipfile.ZipFile(target, "w") as archive_out:
        for item in archive_in.infolist():
            content = archive_in.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                edit(data)
                content = json.dumps(data, indent=4).encode()
            archive_out.writestr(item, content)
    return target


@pytest.mark.parametrize("name", list(CASES))
def test_rebuilt_policy_matches_sb3_load(name, model_zips, env, observations):
    algorithm = CASES[name][0]
    saved = read_model_zip(model_zips[name])
    policy = build_policy(saved, env.observation_space, env.action_space)
    reference = algorithm.load(model_zips[name], device="cpu").policy

    assert saved.family == EXPECTED_FAMILY[name]
    assert not any(module.training for module in policy.modules())

    actions, _ = policy.predict(observations, deterministic=True)
    expected, _ = reference.predict(observations, deterministic=True)
    np.testing.assert_allclose(actions, expected, atol=1e-6)

    # predict clips to the action bounds, so also compare the raw network outputs.
    with th.no_grad():
        raw = policy._predict(th.as_tensor(observations), deterministic=True)
        raw_expected = reference._predict(th.as_tensor(observations), deterministic=True)
    np.testing.assert_allclose(raw.numpy(), raw_expected.numpy(), atol=1e-6)


def test_read_model_zip_reads_kwargs(model_zips):
    ppo = read_model_zip(model_zips["ppo"])
    sac = read_model_zip(model_zips["sac"])
    a2c = read_model_zip(model_zips["a2c"])

    assert ppo.policy_kwargs == {
        "net_arch": [16, 16],
        "activation_fn": th.nn.ReLU,
        "log_std_init": -1.0,
        "use_sde": False,
    }
    assert sac.policy_kwargs["activation_fn"] is th.nn.ELU
    assert sac.policy_kwargs["log_std_init"] == -1.5
    assert a2c.ignored_policy_kwargs == ("optimizer_class", "optimizer_kwargs")
    assert ppo.observation_shape == (3,)
    assert ppo.action_shape == (1,)
    assert ppo.observation_space_type == "Box"


@pytest.mark.skipif(TQC is None, reason="sb3-contrib is not installed")
def test_read_model_zip_reads_tqc_kwargs(model_zips):
    tqc = read_model_zip(model_zips["tqc"])

    assert tqc.policy_kwargs["n_quantiles"] == 5
    assert tqc.policy_kwargs["n_critics"] == 3
    assert tqc.use_sde is True


def test_shipped_hopper_teacher_loads_safely():
    env = gym.make("Hopper-v5")
    saved = read_model_zip(HOPPER_TEACHER / "model.zip")
    policy = build_policy(saved, env.observation_space, env.action_space)
    reference = PPO.load(HOPPER_TEACHER / "model.zip", device="cpu").policy

    env.observation_space.seed(0)
    observations = np.stack([env.observation_space.sample() for _ in range(100)]).clip(-10, 10)
    actions, _ = policy.predict(observations, deterministic=True)
    expected, _ = reference.predict(observations, deterministic=True)
    np.testing.assert_allclose(actions, expected, atol=1e-6)


def test_crafted_zip_runs_no_pickle(model_zips, env, observations, tmp_path):
    marker = tmp_path / "created_by_unpickling"

    def replace_observation_space(data):
        crafted = pickle.dumps(_BoxThatTouchesFile(env.observation_space, marker))
        data["observation_space"][":serialized:"] = base64.b64encode(crafted).decode()

    crafted_zip = _rewrite_data(model_zips["ppo"], tmp_path / "crafted.zip", replace_observation_space)

    policy = build_policy(read_model_zip(crafted_zip), env.observation_space, env.action_space)
    actions, _ = policy.predict(observations, deterministic=True)
    assert not marker.exists()

    original = PPO.load(model_zips["ppo"], device="cpu").policy
    expected, _ = original.predict(observations, deterministic=True)
    np.testing.assert_allclose(actions, expected, atol=1e-6)

    # SB3's own loader unpickles the blob, which proves that the crafted zip is a real threat.
    PPO.load(crafted_zip, device="cpu")
    assert marker.exists()


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("activation_fn", "<class 'torch.nn.modules.activation.Hardswish'>", "Hardswish"),
        ("activation_fn", "<class '__main__.MyActivation'>", "__main__.MyActivation"),
        ("features_extractor_class", "<class 'stable_baselines3.common.torch_layers.NatureCNN'>", "NatureCNN"),
        ("features_extractor_class", "<class 'my_package.Extractor'>", "my_package.Extractor"),
        ("custom_option", 3, "custom_option"),
    ],
)
def test_unsupported_policy_kwarg_raises(key, value, named, model_zips, tmp_path):
    def set_kwarg(data):
        data["policy_kwargs"][key] = value

    crafted_zip = _rewrite_data(model_zips["ppo"], tmp_path / "edited.zip", set_kwarg)

    with pytest.raises(ValueError, match="--trust-teacher") as error:
        read_model_zip(crafted_zip)
    assert named in str(error.value)


def test_unsupported_policy_class_raises(model_zips, tmp_path):
    def use_cnn_policy(data):
        data["policy_class"]["__init__"] = "<function CnnPolicy.__init__ at 0x7f0000000000>"

    crafted_zip = _rewrite_data(model_zips["sac"], tmp_path / "cnn.zip", use_cnn_policy)

    with pytest.raises(ValueError, match="--trust-teacher") as error:
        read_model_zip(crafted_zip)
    assert "stable_baselines3.sac.policies.CnnPolicy" in str(error.value)


def test_observation_shape_mismatch_raises(model_zips, env):
    saved = read_model_zip(model_zips["sac"])
    wider = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)

    with pytest.raises(ValueError) as error:
        build_policy(saved, wider, env.action_space)
    assert "(3,)" in str(error.value)
    assert "(4,)" in str(error.value)


def test_action_space_type_mismatch_raises(model_zips, env):
    saved = read_model_zip(model_zips["ppo"])

    with pytest.raises(ValueError, match="Box action space, but the environment has a Discrete"):
        build_policy(saved, env.observation_space, gym.spaces.Discrete(3))


def _save_vecnormalize(path: Path, norm_obs: bool, norm_reward: bool, protocol: int | None = None) -> VecNormalize:
    venv = VecNormalize(
        DummyVecEnv([lambda: gym.make(ENV_ID)]), norm_obs=norm_obs, norm_reward=norm_reward, clip_obs=7.0, gamma=0.95
    )
    venv.seed(0)
    venv.reset()
    for _ in range(20):
        venv.step(np.array([venv.action_space.sample()]))
    if protocol is None:
        venv.save(path)
    else:
        with path.open("wb") as file:
            pickle.dump(venv, file, protocol=protocol)
    return venv


@pytest.mark.parametrize("norm_obs", [True, False])
@pytest.mark.parametrize("norm_reward", [True, False])
def test_read_vecnormalize_matches_saved(norm_obs, norm_reward, tmp_path):
    path = tmp_path / "vecnormalize.pkl"
    venv = _save_vecnormalize(path, norm_obs, norm_reward)

    stats = read_vecnormalize(path)

    if norm_obs:
        np.testing.assert_array_equal(stats.obs_mean, venv.obs_rms.mean)
        np.testing.assert_array_equal(stats.obs_var, venv.obs_rms.var)
        assert stats.obs_count == venv.obs_rms.count
    else:
        # VecNormalize keeps no observation statistics without norm_obs.
        assert stats.obs_mean is None
        assert stats.obs_var is None
        assert stats.obs_count is None
    assert stats.return_var == float(venv.ret_rms.var)
    assert stats.norm_obs is norm_obs
    assert stats.norm_reward is norm_reward
    assert stats.clip_obs == 7.0
    assert stats.clip_reward == venv.clip_reward
    assert stats.gamma == 0.95
    assert stats.epsilon == venv.epsilon


def test_read_vecnormalize_protocol_5(tmp_path):
    # Python 3.14 pickles with protocol 5 by default, where numpy rebuilds arrays with _frombuffer.
    path = tmp_path / "vecnormalize.pkl"
    venv = _save_vecnormalize(path, norm_obs=True, norm_reward=True, protocol=5)

    stats = read_vecnormalize(path)

    np.testing.assert_array_equal(stats.obs_mean, venv.obs_rms.mean)
    np.testing.assert_array_equal(stats.obs_var, venv.obs_rms.var)


def test_read_shipped_hopper_vecnormalize():
    stats = read_vecnormalize(HOPPER_TEACHER / "vecnormalize.pkl")
    with (HOPPER_TEACHER / "vecnormalize.pkl").open("rb") as file:
        expected = pickle.load(file)

    np.testing.assert_array_equal(stats.obs_mean, expected.obs_rms.mean)
    np.testing.assert_array_equal(stats.obs_var, expected.obs_rms.var)
    assert stats.obs_count == expected.obs_rms.count
    assert stats.return_var == float(expected.ret_rms.var)
    assert stats.norm_reward is True


def test_crafted_vecnormalize_raises(tmp_path):
    marker = tmp_path / "created_by_unpickling"
    path = tmp_path / "vecnormalize.pkl"
    venv = _save_vecnormalize(tmp_path / "original.pkl", norm_obs=True, norm_reward=True)
    # The payload sits inside the attribute dict, where a real attack would hide it.
    venv.norm_obs_keys = _TouchFile(marker)
    venv.save(path)

    with pytest.raises(UnsafePickleError, match="--trust-teacher") as error:
        read_vecnormalize(path)
    assert "pathlib" in str(error.value)
    assert "Path.touch" in str(error.value)
    assert not marker.exists()

    # SB3's own loader unpickles the payload, which proves that the crafted file is a real threat.
    VecNormalize.load(path, DummyVecEnv([lambda: gym.make(ENV_ID)]))
    assert marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [("os", "system"), ("builtins", "eval"), ("builtins", "open"), ("numpy", "load"), ("subprocess", "Popen")],
)
def test_forbidden_global_raises(module, name, tmp_path):
    # A protocol 0 pickle of the bare reference: it only names the global and calls nothing.
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes(f"c{module}\n{name}\n.".encode())

    with pytest.raises(UnsafePickleError, match="--trust-teacher") as error:
        read_vecnormalize(path)
    assert f"{module}.{name}" in str(error.value)


def test_vecnormalize_of_other_object_raises(tmp_path):
    path = tmp_path / "not_vecnormalize.pkl"
    path.write_bytes(pickle.dumps({"obs_rms": np.zeros(3)}))

    with pytest.raises(ValueError, match="expected a stable_baselines3"):
        read_vecnormalize(path)


ZOO_CONFIG = """\
!!python/object/apply:collections.OrderedDict
- - - batch_size
    - 64
  - - env_wrapper
    - - sb3_contrib.common.wrappers.TimeFeatureWrapper
  - - learning_rate
    - lin_7.3e-4
  - - n_timesteps
    - 1000000.0
  - - normalize
    - true
  - - policy
    - MlpPolicy
  - - policy_kwargs
    - dict(log_std_init=-2, net_arch=[16, 16])
  - - train_freq
    - - 1
      - episode
"""

ZOO_ARGS = """\
!!python/object/apply:collections.OrderedDict
- - - algo
    - ppo
  - - env
    - {env}
  - - env_kwargs
    - null
  - - seed
    - 3
  - - wandb_tags
    - []
"""


def _write_zoo_run(folder: Path, env_id: str, model_zip: Path, vecnormalize: Path | None) -> Path:
    """Write the files that RL Zoo's train.py leaves in ``logs/<algo>/<env>_<n>``."""
    name = env_id.replace("/", "-")
    params_dir = folder / name
    params_dir.mkdir(parents=True)
    shutil.copy(model_zip, folder / f"{name}.zip")
    shutil.copy(model_zip, folder / "best_model.zip")
    (params_dir / "config.yml").write_text(ZOO_CONFIG)
    (params_dir / "args.yml").write_text(ZOO_ARGS.format(env=env_id))
    if vecnormalize is not None:
        shutil.copy(vecnormalize, params_dir / "vecnormalize.pkl")
    return folder


def test_find_zoo_run(model_zips, tmp_path):
    vecnormalize = tmp_path / "vecnormalize.pkl"
    _save_vecnormalize(vecnormalize, norm_obs=True, norm_reward=True)
    folder = _write_zoo_run(tmp_path / "ppo" / f"{ENV_ID}_1", ENV_ID, model_zips["ppo"], vecnormalize)

    run = find_zoo_run(folder, None)

    assert run is not None
    assert run.env_id == ENV_ID
    assert run.model_path == folder / f"{ENV_ID}.zip"
    assert run.vecnormalize_path == folder / ENV_ID / "vecnormalize.pkl"
    assert run.config_path == folder / ENV_ID / "config.yml"
    assert run.args_path == folder / ENV_ID / "args.yml"
    assert run.algo == "ppo"
    assert run.normalize is True
    assert run.env_wrapper == ["sb3_contrib.common.wrappers.TimeFeatureWrapper"]
    assert run.hyperparameters["policy_kwargs"] == "dict(log_std_init=-2, net_arch=[16, 16])"
    assert run.hyperparameters["n_timesteps"] == 1e6
    assert run.hyperparameters["train_freq"] == [1, "episode"]
    assert find_zoo_run(folder, ENV_ID) == run
    assert read_vecnormalize(run.vecnormalize_path).norm_obs is True


def test_find_zoo_run_falls_back_to_best_model(model_zips, tmp_path):
    folder = _write_zoo_run(tmp_path / "run", ENV_ID, model_zips["ppo"], None)
    (folder / f"{ENV_ID}.zip").unlink()

    run = find_zoo_run(folder, ENV_ID)

    assert run is not None
    assert run.model_path == folder / "best_model.zip"
    assert run.vecnormalize_path is None


def test_find_zoo_run_env_id_with_slash(model_zips, tmp_path):
    folder = _write_zoo_run(tmp_path / "run", "ALE/Pong-v5", model_zips["ppo"], None)

    by_id = find_zoo_run(folder, "ALE/Pong-v5")
    detected = find_zoo_run(folder, None)

    assert by_id is not None
    assert by_id.model_path == folder / "ALE-Pong-v5.zip"
    assert detected is not None
    assert detected.env_id == "ALE/Pong-v5"


def test_find_zoo_run_without_layout(model_zips, tmp_path):
    plain = tmp_path / "teacher"
    plain.mkdir()
    shutil.copy(model_zips["ppo"], plain / "model.zip")

    assert find_zoo_run(plain, None) is None
    assert find_zoo_run(plain, ENV_ID) is None
    assert find_zoo_run(tmp_path / "missing", None) is None


def test_zoo_config_with_python_tag_raises(model_zips, tmp_path):
    folder = _write_zoo_run(tmp_path / "run", ENV_ID, model_zips["ppo"], None)
    # A bare reference: yaml's unsafe loader would resolve it but call nothing.
    (folder / ENV_ID / "config.yml").write_text("activation: !!python/name:os.system ''\n")

    with pytest.raises(ValueError, match="python/name:os.system"):
        find_zoo_run(folder, ENV_ID)


def test_find_zoo_run_several_env_ids_raises(model_zips, tmp_path):
    folder = _write_zoo_run(tmp_path / "run", ENV_ID, model_zips["ppo"], None)
    _write_zoo_run(folder, "MountainCarContinuous-v0", model_zips["ppo"], None)

    with pytest.raises(ValueError, match="several env ids") as error:
        find_zoo_run(folder, None)
    assert ENV_ID in str(error.value)
    assert find_zoo_run(folder, ENV_ID).env_id == ENV_ID
