"""
Drive a Gymnasium env with a policy in any shipped form (ONNX, TorchScript, SB3 zip), optionally
under an observation attack and on video.

An ONNX policy runs through :mod:`rl_advkd.deploy` and imports no torch. The TorchScript and
SB3 forms import torch when they are loaded.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rl_advkd.errors import UsageError

logger = logging.getLogger(__name__)

PLAY_ATTACKS = ("natural", "random", "mad")
ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".ts")


@dataclass
class PlayPolicy:
    """
    A policy in one of the playable forms, reduced to what an episode loop needs.

    :param form: ``"onnx"``, ``"torchscript"`` or ``"sb3"`` (a student zip, or a teacher folder or model zip)
    :param path: the file or folder it was loaded from
    :param act: maps a batch of raw observations to the clipped deterministic actions
    :param metadata: the export metadata (:func:`rl_advkd.export.policy_metadata`)
    :param frozen: the SB3 policy, present only for the sb3 form; gradient attacks need it
    """

    form: str
    path: Path
    act: Callable[[np.ndarray], np.ndarray]
    metadata: dict[str, Any]
    frozen: Any = None

    @property
    def env_id(self) -> str:
        return self.metadata["env_id"]

    @property
    def epsilon(self) -> float | None:
        """The ℓ∞ budget a student was distilled with; ``None`` for a teacher."""
        return self.metadata.get("epsilon")

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(self.metadata["observation_space"]["shape"])

    @property
    def observation_scale(self) -> np.ndarray:
        """One normalized observation unit in raw units, per dimension: ``sqrt(var + epsilon)``."""
        normalization = self.metadata["normalization"]
        scale = np.sqrt(np.asarray(normalization["var"]) + normalization["epsilon"])
        return scale.reshape(self.observation_shape)


def policy_form(path: Path) -> str:
    """Tell the form of a policy from its path: ``"onnx"``, ``"torchscript"`` or ``"sb3"``."""
    if path.is_dir() or path.suffix == ".zip":
        return "sb3"
    if path.suffix in ONNX_SUFFIXES:
        return "onnx"
    if path.suffix in TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    raise UsageError(
        f"cannot tell the format of {path} from its suffix; pass an exported .onnx or "
        f"{'/'.join(TORCHSCRIPT_SUFFIXES)} file, a student .zip, or a teacher folder or model .zip"
    )


def load_play_policy(path: str | Path, env_id: str | None = None) -> PlayPolicy:
    """
    Load a policy for :func:`play_episodes` in whichever form it was saved.

    :param env_id: the task to play; ``None`` takes the one recorded with the policy
    :raise UsageError: when the file is missing or the policy was made for another task
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"policy not found: {path} does not exist")
    form = policy_form(path)

    if form == "onnx":
        from rl_advkd.deploy import OnnxPolicy

        try:
            onnx_policy = OnnxPolicy(path)
        except ValueError as error:
            raise UsageError(str(error)) from None
        policy = PlayPolicy(form, path, onnx_policy.predict, onnx_policy.metadata)
    elif form == "torchscript":
        policy = _load_torchscript_policy(path)
    else:
        from rl_advkd.export import load_exportable

        frozen, metadata = load_exportable(path, env_id)
        policy = PlayPolicy(form, path, frozen.act, metadata, frozen=frozen)

    if env_id is not None and policy.env_id != env_id:
        raise UsageError(f"{path} was exported for {policy.env_id}, not {env_id}; pass --env {policy.env_id}")
    return policy


def _load_torchscript_policy(path: Path) -> PlayPolicy:
    import torch as th

    from rl_advkd.export import load_torchscript

    try:
        module, metadata = load_torchscript(path)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"cannot load TorchScript policy {path}: {error}") from None

    def act(raw_obs: np.ndarray) -> np.ndarray:
        with th.no_grad():
            return module(th.as_tensor(raw_obs)).numpy()

    return PlayPolicy("torchscript", path, act, metadata)


@dataclass
class EpisodeResult:
    """Return and length of one played episode; ``fell`` when it terminated before the time limit."""

    index: int
    seed: int
    episode_return: float
    length: int
    fell: bool


class ObservationAttacker:
    """
    Perturb raw observations within the ℓ∞ ball of radius ε in normalized units, and return the
    policy's action on the perturbed observation.

    :param attack: ``natural``, ``random`` or ``mad``; ``mad`` needs the sb3 form
    :param seed: seeds the random start or the noise
    """

    def __init__(self, policy: PlayPolicy, attack: str, epsilon: float, seed: int) -> None:
        if attack not in PLAY_ATTACKS:
            raise UsageError(f"unknown attack {attack!r}; choose from {', '.join(PLAY_ATTACKS)}")
        if attack == "mad" and policy.frozen is None:
            raise UsageError(
                f"--attack mad needs the policy's gradients, which an exported {policy.form} file does not "
                f"provide; pass the student .zip or the teacher folder instead of {policy.path}, or use --attack random"
            )
        self.policy = policy
        self.attack = attack
        self.epsilon = float(epsilon)
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self._generator = None

    def act(self, raw_obs: np.ndarray) -> np.ndarray:
        """Return the actions for a batch of raw observations, attacked as configured."""
        if self.attack == "natural":
            return self.policy.act(raw_obs)
        if self.attack == "random":
            # NOTE: the noise is added in raw units before the graph's normalization clip, so for an
            # observation beyond ±clip_obs normalized units the clip can remove part of it. The
            # `evaluate` command adds its noise after the clip; the two agree inside the clip range.
            noise = self.rng.uniform(-self.epsilon, self.epsilon, size=raw_obs.shape)
            return self.policy.act(raw_obs + noise * self.policy.observation_scale)
        return self._mad_action(raw_obs)

    def _mad_action(self, raw_obs: np.ndarray) -> np.ndarray:
        import torch as th

        from rl_advkd.attacks import perturb

        if self._generator is None:
            self._generator = th.Generator().manual_seed(self.seed)
        frozen = self.policy.frozen
        obs = th.as_tensor(frozen.normalizer.normalize(raw_obs))
        perturbed = perturb("mad", frozen, obs, self.epsilon, generator=self._generator)
        with th.no_grad():
            return frozen.clip_action(frozen.mean_action(perturbed).numpy())


class VideoRecorder:
    """
    Write rendered frames to an mp4 file with imageio and ffmpeg.

    Rendering needs an OpenGL backend (``MUJOCO_GL=egl`` or ``osmesa`` without a display). On the
    first failure the recorder logs one warning and stops, so the episodes go on without video.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames_written = 0
        self.failed = False
        self._writer = None

    def capture(self, env: gym.Env) -> None:
        if self.failed:
            return
        # Any renderer or encoder error (a missing OpenGL library, ffmpeg, a full disk) ends the
        # video but not the episodes, so this catches broadly and reports the error once.
        try:
            frame = env.render()
            if self._writer is None:
                import imageio.v2 as imageio

                self.path.parent.mkdir(parents=True, exist_ok=True)
                # The env's render_fps plays the video at the simulation's speed.
                fps = env.metadata.get("render_fps") or 30
                self._writer = imageio.get_writer(str(self.path), format="FFMPEG", fps=fps, codec="libx264")
            self._writer.append_data(frame)
            self.frames_written += 1
        except Exception as error:  # noqa: BLE001
            self.failed = True
            logger.warning("rendering failed, continuing without video (%s: %s)", type(error).__name__, error)

    def close(self) -> bool:
        """Finish the file; return whether a video with at least one frame was written."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as error:  # noqa: BLE001
                self.failed = True
                logger.warning("could not finish video %s (%s: %s)", self.path, type(error).__name__, error)
        return self.frames_written > 0 and not self.failed


def make_play_env(env_id: str, render: bool) -> gym.Env:
    """Create the env, with ``render_mode="rgb_array"`` when a video is requested and the env allows it."""
    if not render:
        return gym.make(env_id)
    try:
        return gym.make(env_id, render_mode="rgb_array")
    except Exception as error:  # noqa: BLE001 - same policy as VideoRecorder: video is optional
        logger.warning("rendering failed, continuing without video (%s: %s)", type(error).__name__, error)
        return gym.make(env_id)


def play_episodes(
    policy: PlayPolicy,
    env_id: str,
    episodes: int,
    seed: int = 0,
    attacker: ObservationAttacker | None = None,
    video: VideoRecorder | None = None,
) -> Iterator[EpisodeResult]:
    """
    Play deterministic episodes and yield each result as it ends.

    Episode ``i`` resets the env with seed ``seed + i``, as the ``evaluate`` command does, so
    both commands start the same episodes from the same states.

    :param attacker: perturbs the observations; ``None`` plays without attack
    :param video: records every frame of every episode
    """
    env = make_play_env(env_id, render=video is not None)
    if env.observation_space.shape != policy.observation_shape:
        env.close()
        raise UsageError(
            f"{policy.path} expects observations of shape {policy.observation_shape}, but {env_id} gives "
            f"{env.observation_space.shape}; pass the policy made for {env_id}"
        )
    if video is not None and env.render_mode != "rgb_array":
        video = None  # make_play_env has already warned that rendering failed
    act = attacker.act if attacker is not None else policy.act
    try:
        for index in range(episodes):
            observation, _ = env.reset(seed=seed + index)
            if video is not None:
                video.capture(env)
            episode_return, length, terminated, truncated = 0.0, 0, False, False
            while not (terminated or truncated):
                action = act(observation[np.newaxis])[0]
                observation, reward, terminated, truncated, _ = env.step(action)
                episode_return += float(reward)
                length += 1
                if video is not None:
                    video.capture(env)
            yield EpisodeResult(index, seed + index, episode_return, length, bool(terminated))
    finally:
        env.close()
