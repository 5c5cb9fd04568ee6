"""Headless rendering: the OpenGL backend of MuJoCo and short policy videos written as mp4."""

import ctypes.util
import logging
import os
from pathlib import Path

# Only the standard library at module level, because choose_gl_backend must run before
# anything imports MuJoCo.
logger = logging.getLogger(__name__)

# Shared libraries that each headless backend of MuJoCo loads, in the order they are tried.
HEADLESS_BACKENDS = {"egl": "EGL", "osmesa": "OSMesa"}

# Frames of one video, because 1000 steps is the time limit of most MuJoCo tasks in Gymnasium.
DEFAULT_VIDEO_FRAMES = 1000

_backend_problem: str | None = None
_problem_reported = False


def choose_gl_backend() -> str | None:
    """
    Set ``MUJOCO_GL`` before MuJoCo is imported and return the backend, or ``None`` when none fits.

    A value the user set is kept as it is. Otherwise EGL is chosen when ``libEGL`` can be found,
    else OSMesa when ``libOSMesa`` can be found. When neither is found, ``MUJOCO_GL`` stays unset
    and :func:`render_problem` returns the reason, so videos are skipped with one message.
    """
    global _backend_problem

    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    # NOTE: finding the library does not prove it renders (for example EGL without a GPU driver).
    # Such a failure shows at the first video, which record_policy_video then reports once.
    for backend, library in HEADLESS_BACKENDS.items():
        if ctypes.util.find_library(library) is not None:
            os.environ["MUJOCO_GL"] = backend
            return backend
    _backend_problem = "no headless OpenGL library found (install libEGL or libOSMesa, or set MUJOCO_GL)"
    return None


def render_problem() -> str | None:
    """Return why videos cannot be rendered, or ``None`` when a backend was chosen or set."""
    return _backend_problem


def frame_limited_recorder(path: Path, max_frames: int = DEFAULT_VIDEO_FRAMES):
    """
    Return a :class:`~rl_advkd.play.VideoRecorder` that stops recording after ``max_frames`` frames.

    :param path: the mp4 file to write
    :param max_frames: frames kept; later calls to ``capture`` do nothing
    """
    from rl_advkd.play import VideoRecorder

    class FrameLimitedRecorder(VideoRecorder):
        def capture(self, env) -> None:
            if self.frames_written < max_frames:
                super().capture(env)

    return FrameLimitedRecorder(path)


def record_policy_video(
    policy_path: Path,
    env_id: str,
    path: Path,
    attack: str = "natural",
    epsilon: float = 0.0,
    seed: int = 0,
    max_frames: int = DEFAULT_VIDEO_FRAMES,
) -> Path | None:
    """
    Play one deterministic episode of a saved policy and write its frames to ``path``.

    :param policy_path: a student zip, or a teacher folder or model zip
    :param attack: an observation attack of :data:`~rl_advkd.play.PLAY_ATTACKS`
    :param epsilon: the attack budget in normalized units
    :param seed: the reset seed of the episode, as in ``evaluate``
    :param max_frames: frames kept from the start of the episode
    :return: ``path``, or ``None`` when nothing could be rendered (the reason is logged)
    """
    global _backend_problem, _problem_reported

    from rl_advkd.play import PLAY_ATTACKS, ObservationAttacker, load_play_policy, play_episodes

    problem = render_problem()
    if problem is not None:
        # One warning per process is enough, because every later video fails for the same reason.
        if not _problem_reported:
            logger.warning("continuing without videos: %s", problem)
            _problem_reported = True
        return None
    if attack not in PLAY_ATTACKS:
        logger.warning("skipping video %s: attack %r cannot be replayed, only %s", path.name, attack, PLAY_ATTACKS)
        return None

    policy = load_play_policy(policy_path, env_id)
    attacker = ObservationAttacker(policy, attack, epsilon, seed) if attack != "natural" else None
    recorder = frame_limited_recorder(path, max_frames)
    for _ in play_episodes(policy, env_id, episodes=1, seed=seed, attacker=attacker, video=recorder):
        pass
    if recorder.close():
        return path

    # VideoRecorder has logged the error; later videos would fail the same way, so skip them.
    _backend_problem = "rendering failed on the first video"
    _problem_reported = True
    return None
