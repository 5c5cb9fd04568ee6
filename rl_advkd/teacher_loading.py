"""
Find and load a frozen teacher: any SB3 actor (PPO, A2C, SAC, TQC, TD3, DDPG), with or without
``VecNormalize``, from an rl_advkd folder, an RL Zoo run folder or a bare model zip.

By default nothing pickled inside the files runs: the weights come from ``policy.pth`` read with
``weights_only=True``, the settings from the zip's JSON, the spaces from the env and the
normalization arrays from a restricted unpickler (:mod:`rl_advkd.safe_loading`). ``trust=True``
falls back to SB3's full load, which unpickles the zip's entries and ``vecnormalize.pkl``.
"""

import json
import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rl_advkd.errors import UsageError
from rl_advkd.normalization import ObservationNormalizer
from rl_advkd.paths import shipped_teacher_dir
from rl_advkd.policies import FrozenPolicy
from rl_advkd.provenance import file_sha256
from rl_advkd.safe_loading import (
    NormalizationStats,
    build_policy,
    find_zoo_run,
    read_model_zip,
    read_vecnormalize,
)

logger = logging.getLogger(__name__)

MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.pkl"
PROVENANCE_FILE = "provenance.json"

# Environment steps of teacher rollouts from which the statistics of a teacher trained on raw
# observations are estimated.
STATS_STEPS = 10_000


@dataclass
class TeacherSource:
    """
    Locations of a teacher's files and what is recorded with them.

    :param model: the SB3 model zip
    :param vecnormalize: its ``VecNormalize`` statistics, or ``None``
    :param recorded_env_id: the env id recorded with the teacher, or ``None`` if nothing records it
    :param normalized: whether the teacher was trained on normalized observations, if recorded
    :param algo: the algorithm recorded with the teacher (``provenance.json`` or the RL Zoo folder)
    :param provenance: the teacher's ``provenance.json``, if any
    :param layout: ``rl_advkd``, ``rl_zoo`` or ``zip``
    :param notes: things the caller should tell the user, such as env wrappers that are not applied
    """

    model: Path
    vecnormalize: Path | None
    recorded_env_id: str | None = None
    normalized: bool | None = None
    algo: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    layout: str = "zip"
    notes: list[str] = field(default_factory=list)


def resolve_teacher(path: str | Path | None, env_id: str, vecnormalize: str | Path | None = None) -> TeacherSource:
    """
    Find the teacher's model zip and its statistics.

    :param path: an rl_advkd teacher folder, an RL Zoo run folder, a model ``.zip``, or ``None``
        for the shipped teacher of ``env_id``
    :param vecnormalize: the ``VecNormalize`` file, when it is not where the layout puts it
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
    if vecnormalize is not None and not Path(vecnormalize).is_file():
        raise UsageError(f"--vecnormalize {vecnormalize} does not exist; pass the statistics file saved with the teacher")

    source = _rl_zoo_source(path, env_id) if path.is_dir() else None
    if source is None and path.is_dir():
        model = path / MODEL_FILE
        if not model.is_file():
            raise UsageError(
                f"teacher folder {path} has neither {MODEL_FILE} nor an RL Zoo layout (<ENV_ID>.zip with "
                "<ENV_ID>/config.yml); pass the model .zip itself"
            )
        source = _rl_advkd_source(model)
    elif source is None:
        source = _zip_source(path)

    if vecnormalize is not None:
        source.vecnormalize = Path(vecnormalize)
    return source


def _rl_advkd_source(model: Path) -> TeacherSource:
    provenance_path = model.parent / PROVENANCE_FILE
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
    stats = model.parent / VECNORMALIZE_FILE
    normalize = provenance.get("normalize")
    return TeacherSource(
        model=model,
        vecnormalize=stats if stats.is_file() else None,
        recorded_env_id=provenance.get("env_id"),
        normalized=bool(normalize.get("norm_obs", True)) if isinstance(normalize, dict) else None,
        algo=provenance.get("algo"),
        provenance=provenance,
        layout="rl_advkd",
    )


def _rl_zoo_source(folder: Path, env_id: str) -> TeacherSource | None:
    run = find_zoo_run(folder, env_id)
    if run is None:
        return None
    notes = []
    if run.env_wrapper:
        notes.append(
            f"the RL Zoo config of {folder} names env wrappers ({run.env_wrapper}) that rl_advkd does not apply; "
            "a wrapper that changes observations (TimeFeatureWrapper adds one) makes the shapes differ"
        )
    return TeacherSource(
        model=run.model_path,
        vecnormalize=run.vecnormalize_path,
        recorded_env_id=run.env_id,
        # RL Zoo records normalize as false, true, or VecNormalize kwargs; false means raw observations.
        normalized=None if run.normalize else False,
        algo=run.algo,
        layout="rl_zoo",
        notes=notes,
    )


def _zip_source(model: Path) -> TeacherSource:
    if model.suffix != ".zip":
        raise UsageError(f"invalid teacher {model}: not a .zip file; pass an SB3 model zip or the folder that contains it")
    if model.name == MODEL_FILE:
        return _rl_advkd_source(model)
    # RL Zoo keeps the statistics of <ENV_ID>.zip in the folder <ENV_ID>/ next to it.
    candidates = [model.parent / model.stem / VECNORMALIZE_FILE, model.parent / VECNORMALIZE_FILE]
    stats = next((candidate for candidate in candidates if candidate.is_file()), None)
    return TeacherSource(model=model, vecnormalize=stats, layout="zip")


def load_teacher(
    path: str | Path | None,
    env_id: str,
    algo: str | None = None,
    *,
    vecnormalize: str | Path | None = None,
    raw_observations: bool = False,
    trust: bool = False,
    allow_env_mismatch: bool = False,
    normalizer: ObservationNormalizer | None = None,
    stats_steps: int = STATS_STEPS,
    action_std: float = 0.1,
    seed: int = 0,
) -> FrozenPolicy:
    """
    Load a frozen teacher: policy weights plus the observation statistics that define ε.

    :param path: teacher folder, RL Zoo run folder or model zip; ``None`` loads the shipped teacher
    :param env_id: the task the teacher will be used on; spaces are checked against it
    :param algo: ``ppo``, ``a2c``, ``sac``, ``tqc``, ``td3`` or ``ddpg``; read from the files by default
    :param vecnormalize: the ``VecNormalize`` file when it is not where the layout puts it
    :param raw_observations: the teacher was trained without observation normalization; its
        statistics are then estimated from ``stats_steps`` steps of its own rollouts
    :param trust: load with SB3's full load, which runs the pickled code in the files
    :param allow_env_mismatch: accept a teacher recorded for another env id (a warning, and
        ``info["env_mismatch"]`` records it)
    :param normalizer: statistics to use for a teacher trained on raw observations, instead of
        estimating them (a resumed run reuses its own)
    :param action_std: fixed standard deviation of a deterministic (TD3, DDPG) teacher, as a
        fraction of half the action range
    :param seed: seed of the rollouts that estimate statistics
    """
    source = resolve_teacher(path, env_id, vecnormalize)
    for note in source.notes:
        logger.warning(note)

    # Shapes first: a teacher for another task fails with both shapes named.
    env = gym.make(env_id)
    try:
        if trust:
            policy, algo = _trusted_policy(source, algo)
            check_spaces(policy.observation_space, policy.action_space, env, env_id, what=f"teacher {source.model}")
        else:
            policy, algo = _safe_policy(source, algo, env, env_id)
    finally:
        env.close()
    env_mismatch = _check_recorded_env(source, env_id, allow_env_mismatch)

    stats = _read_statistics(source, trust)
    reward_scale = 1.0
    if stats is not None and stats.norm_reward:
        reward_scale = float(np.sqrt(stats.return_var + stats.epsilon))
    raw_input = stats is None or not stats.norm_obs
    if stats is None and not raw_observations and source.normalized is not False:
        raise UsageError(
            f"missing normalization statistics for teacher {source.model}: expected {_expected_stats_path(source)}. "
            "Pass --vecnormalize PATH to the VecNormalize file saved with the teacher (vecnormalize.pkl), or "
            "--raw-observations if it was trained without observation normalization"
        )

    if raw_input:
        frozen = FrozenPolicy(policy, ObservationNormalizer.identity(policy.observation_space.shape), env_id)
        if normalizer is None:
            normalizer = estimate_normalizer(frozen, env_id, stats_steps, seed)
            statistics_source = f"estimated from {stats_steps} steps of teacher rollouts"
        else:
            statistics_source = "given"
    else:
        normalizer = ObservationNormalizer(
            mean=stats.obs_mean, var=stats.obs_var, clip_obs=stats.clip_obs, epsilon=stats.epsilon, count=stats.obs_count,
        )
        statistics_source = f"VecNormalize ({source.vecnormalize})"
    if normalizer.shape != policy.observation_space.shape:
        raise UsageError(
            f"normalization statistics {source.vecnormalize} have shape {normalizer.shape} but the teacher's "
            f"observations have shape {policy.observation_space.shape}; use the statistics saved with this teacher"
        )

    return FrozenPolicy(
        policy=policy,
        normalizer=normalizer,
        env_id=env_id,
        name="teacher",
        path=source.model,
        raw_input=raw_input,
        action_std=action_std,
        info={
            "provenance": source.provenance,
            "sha256": file_sha256(source.model),
            "algo": algo,
            "reward_scale": reward_scale,
            "load_mode": "trusted (SB3 full load)" if trust else "safe (weights only)",
            "layout": source.layout,
            "vecnormalize": str(source.vecnormalize) if source.vecnormalize else None,
            "statistics": statistics_source,
            "recorded_env_id": source.recorded_env_id,
            "env_mismatch": env_mismatch,
        },
    )


def _expected_stats_path(source: TeacherSource) -> Path:
    if source.layout == "rl_zoo" or source.model.name != MODEL_FILE:
        return source.model.parent / source.model.stem / VECNORMALIZE_FILE
    return source.model.parent / VECNORMALIZE_FILE


def _check_recorded_env(source: TeacherSource, env_id: str, allow_env_mismatch: bool) -> str | None:
    recorded = source.recorded_env_id
    if recorded is None or recorded == env_id:
        return None
    if not allow_env_mismatch:
        raise UsageError(
            f"teacher {source.model} was trained on {recorded}, not {env_id}; pass --env {recorded}, "
            "or --allow-env-mismatch to use it anyway (results are then tagged)"
        )
    logger.warning("teacher %s was trained on %s and is used on %s (--allow-env-mismatch)", source.model, recorded, env_id)
    return recorded


def _safe_policy(source: TeacherSource, algo: str | None, env: gym.Env, env_id: str) -> tuple[Any, str]:
    try:
        saved = read_model_zip(source.model)
        policy = build_policy(saved, env.observation_space, env.action_space)
    except ValueError as error:
        # Most of the safe loader's messages name the path already; a recorded env id gives the fix.
        message = str(error) if str(source.model) in str(error) else f"{source.model}: {error}"
        hint = f"; pass --env {source.recorded_env_id}" if source.recorded_env_id not in (None, env_id) else ""
        raise UsageError(f"teacher {message}{hint}") from None

    # The policy was rebuilt with the env's spaces; the recorded bounds tell whether they differ.
    bounds = recorded_action_bounds(source.model)
    if bounds is not None:
        low, high = bounds
        if low.shape != env.action_space.low.shape or not (
            np.allclose(low, env.action_space.low) and np.allclose(high, env.action_space.high)
        ):
            logger.warning(
                "teacher %s was trained with action bounds [%s, %s], which differ from those of %s ([%s, %s])",
                source.model,
                low,
                high,
                env_id,
                env.action_space.low,
                env.action_space.high,
            )
    return policy, (algo or source.algo or saved.family).lower()


def recorded_action_bounds(model: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """
    Read the action bounds that SB3 wrote as text into the zip's JSON, without unpickling.

    :return: (low, high), or ``None`` when the text is missing or abbreviated by numpy
    """
    with zipfile.ZipFile(model) as archive:
        space = json.loads(archive.read("data")).get("action_space", {})
    try:
        low, high = (np.array(str(space[key]).strip("[]").split(), dtype=np.float64) for key in ("low", "high"))
    except (KeyError, ValueError):
        return None
    return low, high


def _trusted_policy(source: TeacherSource, algo: str | None) -> tuple[Any, str]:
    # NOTE: SB3's load unpickles the zip's entries, which can run any code stored in the file.
    algo = (algo or source.algo or read_model_zip(source.model).family).lower()
    algorithm = algorithm_class(algo)
    model = algorithm.load(source.model, device="cpu")
    return model.policy, algo


def algorithm_class(algo: str) -> type:
    from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3

    classes: dict[str, type] = {"ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3, "ddpg": DDPG}
    if algo == "tqc":
        try:
            from sb3_contrib import TQC
        except ImportError:
            raise UsageError("a TQC teacher needs sb3-contrib; install it with pip install sb3-contrib") from None
        return TQC
    if algo not in classes:
        raise UsageError(f"teacher algorithm {algo!r} is not supported; choose from a2c, ddpg, ppo, sac, td3, tqc")
    return classes[algo]


def _read_statistics(source: TeacherSource, trust: bool) -> NormalizationStats | None:
    """Read the ``VecNormalize`` statistics, or return ``None`` when there is no file."""
    if source.vecnormalize is None:
        return None
    if not trust:
        try:
            return read_vecnormalize(source.vecnormalize)
        except ValueError as error:
            raise UsageError(f"teacher statistics {source.vecnormalize}: {error}") from None

    # NOTE: a pickle, so loading it runs the code it names; with --trust-teacher the user vouches for the file.
    with source.vecnormalize.open("rb") as file:
        vec_normalize = pickle.load(file)
    # SB3 creates obs_rms only when it normalizes observations.
    obs_rms = getattr(vec_normalize, "obs_rms", None) if vec_normalize.norm_obs else None
    return NormalizationStats(
        obs_mean=None if obs_rms is None else np.asarray(obs_rms.mean),
        obs_var=None if obs_rms is None else np.asarray(obs_rms.var),
        obs_count=None if obs_rms is None else float(obs_rms.count),
        clip_obs=float(vec_normalize.clip_obs),
        clip_reward=float(vec_normalize.clip_reward),
        epsilon=float(vec_normalize.epsilon),
        gamma=float(vec_normalize.gamma),
        norm_obs=bool(vec_normalize.norm_obs),
        norm_reward=bool(vec_normalize.norm_reward),
        return_var=float(np.asarray(vec_normalize.ret_rms.var)),
    )


def estimate_normalizer(teacher: FrozenPolicy, env_id: str, steps: int, seed: int = 0) -> ObservationNormalizer:
    """
    Estimate observation statistics from ``steps`` env steps of the teacher's deterministic rollouts.

    The result defines the normalized space in which ε is measured for a teacher that never had
    one. It is frozen from then on and saved with the student.

    :param teacher: a teacher that reads raw observations (identity normalizer)
    """
    if steps < 1:
        raise UsageError(f"stats_steps must be >= 1, got {steps}; pass e.g. --stats-steps 10000")
    env = gym.make(env_id)
    observations = []
    obs, _ = env.reset(seed=seed)
    episode = 0
    for _ in range(steps):
        observations.append(obs)
        obs, _, terminated, truncated, _ = env.step(teacher.act(obs[None])[0])
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    env.close()
    observations = np.asarray(observations, dtype=np.float64)
    logger.info("estimated observation statistics from %d steps (%d episodes) of teacher rollouts", steps, episode)
    # No clip: the teacher reads raw observations, mapped back from the normalized ones, and a clip
    # would change its actions on states beyond the clip.
    # NOTE: a dimension that barely varied in the teacher's rollouts gets large normalized values
    # elsewhere. Its variance is floored at 1e-6 (and set to 1 where it never varied), so ε there
    # is at least 1e-3 raw units.
    var = observations.var(axis=0)
    var = np.where(var > 0.0, np.maximum(var, 1e-6), 1.0)
    return ObservationNormalizer(mean=observations.mean(axis=0), var=var, clip_obs=float("inf"), count=float(steps))


def check_spaces(observation_space: gym.Space, action_space: gym.Space, env: gym.Env, env_id: str, what: str) -> None:
    """Raise a :class:`UsageError` naming both shapes when a policy does not fit ``env``."""
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
    if observation_space.dtype != env.observation_space.dtype:
        raise UsageError(
            f"{what} expects observations of dtype {observation_space.dtype}, but {env_id} gives "
            f"{env.observation_space.dtype}; pass a policy trained on {env_id}"
        )
    if not np.allclose(action_space.low, env.action_space.low) or not np.allclose(
        action_space.high, env.action_space.high
    ):
        logger.warning("%s has action bounds that differ from those of %s", what, env_id)
