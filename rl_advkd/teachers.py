"""Train an SB3 PPO teacher from a task profile, and load a frozen teacher behind one interface."""

import json
import logging
import pickle
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecNormalize

from rl_advkd.errors import UsageError
from rl_advkd.evaluation import run_episodes
from rl_advkd.logging_utils import SummaryLineWriter
from rl_advkd.normalization import ObservationNormalizer
from rl_advkd.paths import shipped_teacher_dir
from rl_advkd.policies import FrozenPolicy
from rl_advkd.profiles import TaskProfile
from rl_advkd.provenance import command_line, file_sha256, library_versions, utc_now, write_json
from rl_advkd.reporting import VIDEO_DIR, log_model_artifact, write_videos
from rl_advkd.tracking import Tracker
from rl_advkd.tracking_options import TrackingOptions

logger = logging.getLogger(__name__)

MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.pkl"
PROVENANCE_FILE = "provenance.json"

# Teacher algorithms with a diagonal Gaussian head; other SB3 algorithms need their own KL.
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C}

ACTIVATIONS = {"tanh": th.nn.Tanh, "relu": th.nn.ReLU, "elu": th.nn.ELU, "leaky_relu": th.nn.LeakyReLU}


def policy_kwargs_from_profile(values: dict[str, Any]) -> dict[str, Any]:
    """Turn YAML policy kwargs into SB3 ones: activation names become ``torch.nn`` classes."""
    kwargs = dict(values)
    activation = kwargs.get("activation_fn")
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise UsageError(f"unknown activation_fn {activation!r}; choose from {sorted(ACTIVATIONS)}")
        kwargs["activation_fn"] = ACTIVATIONS[activation]
    return kwargs


def train_teacher(
    profile: TaskProfile,
    out_dir: str | Path,
    total_timesteps: int | None = None,
    seed: int | None = None,
    progress_bar: bool = True,
    tracking: TrackingOptions | None = None,
) -> dict[str, Any]:
    """
    Train a PPO teacher with ``VecNormalize`` and save it with its statistics and provenance.

    The folder receives ``model.zip``, ``vecnormalize.pkl``, ``provenance.json``, SB3's logs
    (``progress.csv``, TensorBoard) and ``evaluations.npz``, a deterministic learning curve that
    shows whether the teacher got stuck. Ctrl-C still saves the model trained so far, marked
    ``"interrupted": true`` in its provenance. With ``tracking.track`` or ``tracking.video`` the
    folder also receives ``videos/``, and with ``tracking.track`` ``model.onnx`` and the W&B run.

    :param progress_bar: show SB3's progress bar; training also logs one line per PPO iteration
    :param tracking: W&B and video options; ``None`` records only the folder
    :return: the provenance record
    """
    config = profile.teacher
    total_timesteps = config.total_timesteps if total_timesteps is None else total_timesteps
    seed = config.seed if seed is None else seed
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    hyperparams = dict(config.hyperparams)
    policy_kwargs = policy_kwargs_from_profile(hyperparams.pop("policy_kwargs", {}))
    gamma = hyperparams.get("gamma", 0.99)
    venv = VecNormalize(make_vec_env(profile.env_id, n_envs=config.n_envs, seed=seed), gamma=gamma, **config.normalize)
    eval_env = VecNormalize(
        make_vec_env(profile.env_id, n_envs=1, seed=seed + 10_000), gamma=gamma, training=False, **config.normalize
    )
    eval_env.norm_reward = False

    model = PPO("MlpPolicy", venv, seed=seed, policy_kwargs=policy_kwargs, verbose=0, **hyperparams)
    # One log line per iteration reads better than SB3's stdout table in a terminal and in a log file.
    sb3_logger = configure(str(out_dir / "logs"), ["log", "csv", "tensorboard"])
    sb3_logger.output_formats.append(SummaryLineWriter(total_timesteps))
    tracker = Tracker.start(
        tracking,
        out_dir,
        {
            "env_id": profile.env_id,
            "profile": profile.source,
            "teacher": asdict(config),
            "total_timesteps": total_timesteps,
            "seed": seed,
            "versions": library_versions(),
            "command": command_line(),
        },
        job_type="teacher",
        group=f"{profile.env_id}/teacher",
        name=f"teacher-seed{seed}",
    )
    sb3_logger.output_formats.append(tracker.writer())
    model.set_logger(sb3_logger)
    # EvalCallback copies the training statistics into eval_env before each evaluation.
    curve = EvalCallback(
        eval_env,
        n_eval_episodes=5,
        eval_freq=max(25_000 // config.n_envs, 1),
        log_path=str(out_dir),
        deterministic=True,
        verbose=0,
    )

    started = time.time()
    interrupted = False
    try:
        model.learn(total_timesteps, callback=curve, progress_bar=progress_bar)
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted at %d steps; saving the teacher trained so far", model.num_timesteps)
    train_seconds = time.time() - started

    model.save(out_dir / MODEL_FILE)
    venv.save(str(out_dir / VECNORMALIZE_FILE))

    teacher = load_teacher(out_dir, env_id=profile.env_id)
    row = run_episodes(teacher, profile.env_id, "natural", 0.0, config.eval_episodes, seed=seed + 20_000)
    record = {
        "env_id": profile.env_id,
        "algo": "ppo",
        "command": command_line(),
        "total_timesteps": int(model.num_timesteps),
        "requested_timesteps": int(total_timesteps),
        "interrupted": interrupted,
        "seed": seed,
        "train_seconds": round(train_seconds, 1),
        "created": utc_now(),
        "hyperparams": config.hyperparams,
        "normalize": config.normalize,
        "evaluation": {
            "episodes": row.episodes,
            "deterministic": True,
            "mean_return": row.mean,
            "std_return": row.std,
            "falls": row.falls,
        },
        "model_sha256": file_sha256(out_dir / MODEL_FILE),
        "versions": library_versions(),
    }
    write_json(out_dir / PROVENANCE_FILE, record)
    venv.close()
    eval_env.close()

    final_evaluation = {"eval/teacher/natural/mean_return": row.mean, "eval/teacher/natural/falls": row.falls}
    tracker.log_metrics(final_evaluation, model.num_timesteps)
    if tracking is not None and tracking.wants_video:
        # The video replays the first episode of the final evaluation above.
        videos = write_videos(
            out_dir / MODEL_FILE,
            profile.env_id,
            [],
            0.0,
            seed + 20_000,
            out_dir / VIDEO_DIR,
            tracking.video_frames,
            prefix="teacher",
        )
        for key, path in videos.items():
            tracker.log_video(path, key)
    extra_files = [out_dir / name for name in (MODEL_FILE, VECNORMALIZE_FILE, PROVENANCE_FILE)]
    log_model_artifact(tracker, out_dir, profile.env_id, "teacher", extra_files)
    tracker.finish(exit_code=1 if interrupted else 0)
    return record


def resolve_teacher_path(path: str | Path | None, env_id: str) -> tuple[Path, Path]:
    """
    Find the teacher's model zip and its ``vecnormalize.pkl``.

    :param path: a teacher folder, a model ``.zip``, or ``None`` for the shipped teacher of ``env_id``
    :return: (model zip, statistics file)
    """
    if path is None:
        path = shipped_teacher_dir(env_id)
        if not path.is_dir():
            raise UsageError(
                f"no shipped teacher for {env_id} (looked in {path}); train one with "
                f"'rl-advkd teacher --env {env_id}' or pass --teacher PATH"
            )
    path = Path(path)
    if not path.exists():
        raise UsageError(f"teacher not found: {path} does not exist; pass a teacher folder or its model .zip")
    model_path = path / MODEL_FILE if path.is_dir() else path
    if not model_path.is_file():
        raise UsageError(f"teacher folder {path} has no {MODEL_FILE}; pass the model .zip itself")
    return model_path, model_path.parent / VECNORMALIZE_FILE


def load_teacher(path: str | Path | None, env_id: str, algo: str | None = None) -> FrozenPolicy:
    """
    Load a frozen teacher: policy weights plus its ``VecNormalize`` observation statistics.

    :param path: teacher folder or model zip; ``None`` loads the shipped teacher of ``env_id``
    :param env_id: the task the teacher will be used on; shapes are checked against it
    :param algo: ``ppo`` or ``a2c``; by default read from ``provenance.json``, else PPO
    """
    model_path, stats_path = resolve_teacher_path(path, env_id)
    provenance_path = model_path.parent / PROVENANCE_FILE
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
    algo = (algo or provenance.get("algo") or "ppo").lower()
    if algo not in ALGORITHMS:
        raise UsageError(f"teacher algorithm {algo!r} is not supported; choose from {sorted(ALGORITHMS)}")

    if not stats_path.is_file():
        raise UsageError(
            f"missing normalization statistics for teacher {model_path}: expected {stats_path}. "
            "Copy the VecNormalize file saved with the teacher next to its model as vecnormalize.pkl "
            "(teachers trained without VecNormalize are not supported yet)"
        )
    # NOTE: SB3's zip stores spaces with cloudpickle and vecnormalize.pkl is a pickle, so loading
    # runs code from those files. Only load teachers from sources you trust.
    model = ALGORITHMS[algo].load(model_path, device="cpu")
    with stats_path.open("rb") as file:
        vec_normalize = pickle.load(file)
    normalizer = ObservationNormalizer.from_vecnormalize(vec_normalize)

    check_spaces(model.observation_space, model.action_space, env_id, what=f"teacher {model_path}")
    if normalizer.shape != model.observation_space.shape:
        raise UsageError(
            f"normalization statistics {stats_path} have shape {normalizer.shape} but the teacher's "
            f"observations have shape {model.observation_space.shape}; use the statistics saved with this teacher"
        )
    recorded_env = provenance.get("env_id")
    if recorded_env is not None and recorded_env != env_id:
        raise UsageError(f"teacher {model_path} was trained on {recorded_env}, not {env_id}; pass --env {recorded_env}")

    return FrozenPolicy(
        policy=model.policy,
        normalizer=normalizer,
        env_id=env_id,
        name="teacher",
        path=model_path,
        info={
            "provenance": provenance,
            "sha256": file_sha256(model_path),
            "algo": algo,
            "reward_scale": reward_scale(vec_normalize),
        },
    )


def reward_scale(vec_normalize: VecNormalize) -> float:
    """Return the frozen factor by which the teacher's ``VecNormalize`` divided rewards (1 if it did not)."""
    if not vec_normalize.norm_reward:
        return 1.0
    return float(np.sqrt(vec_normalize.ret_rms.var + vec_normalize.epsilon))


def check_spaces(observation_space: gym.Space, action_space: gym.Space, env_id: str, what: str) -> None:
    """Raise a :class:`UsageError` naming both shapes when a policy does not fit ``env_id``."""
    env = gym.make(env_id)
    try:
        if observation_space.shape != env.observation_space.shape:
            raise UsageError(
                f"{what} expects observations of shape {observation_space.shape}, but {env_id} gives "
                f"{env.observation_space.shape}; pass the --env it was trained on, or a policy trained on {env_id}"
            )
        if action_space.shape != env.action_space.shape:
            raise UsageError(
                f"{what} outputs actions of shape {action_space.shape}, but {env_id} takes "
                f"{env.action_space.shape}; pass the --env it was trained on, or a policy trained on {env_id}"
            )
        if not np.allclose(action_space.low, env.action_space.low) or not np.allclose(
            action_space.high, env.action_space.high
        ):
            logger.warning("%s has action bounds that differ from those of %s", what, env_id)
    finally:
        env.close()
