"""Train an SB3 teacher from a task profile; :func:`load_teacher` loads any SB3 teacher frozen."""

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecNormalize

from rl_advkd.errors import UsageError
from rl_advkd.evaluation import run_episodes
from rl_advkd.logging_utils import SummaryLineWriter
from rl_advkd.profiles import TaskProfile
from rl_advkd.provenance import command_line, file_sha256, library_versions, utc_now, write_json
from rl_advkd.reporting import VIDEO_DIR, log_model_artifact, write_videos
from rl_advkd.teacher_loading import MODEL_FILE, PROVENANCE_FILE, VECNORMALIZE_FILE, algorithm_class, load_teacher
from rl_advkd.tracking import Tracker
from rl_advkd.tracking_options import TrackingOptions

logger = logging.getLogger(__name__)

__all__ = ["MODEL_FILE", "PROVENANCE_FILE", "VECNORMALIZE_FILE", "load_teacher", "train_teacher"]

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
    Train a teacher (PPO by default) inside ``VecNormalize`` and save it with its statistics and provenance.

    The folder receives ``model.zip``, ``vecnormalize.pkl``, ``provenance.json``, SB3's logs
    (``progress.csv``, TensorBoard) and ``evaluations.npz``, a deterministic learning curve that
    shows whether the teacher got stuck. Ctrl-C still saves the model trained so far, marked
    ``"interrupted": true`` in its provenance. With ``tracking.track`` or ``tracking.video`` the
    folder also receives ``videos/``, and with ``tracking.track`` ``model.onnx`` and the W&B run.

    :param progress_bar: show SB3's progress bar; training also logs one line per logger dump
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

    algorithm = algorithm_class(config.algo)
    model = algorithm("MlpPolicy", venv, seed=seed, policy_kwargs=policy_kwargs, verbose=0, device="cpu", **hyperparams)
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
        "algo": config.algo,
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
