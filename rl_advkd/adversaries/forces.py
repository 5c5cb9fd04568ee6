"""
External pushes on named bodies of a MuJoCo env, the disturbance of Pinto et al. (2017),
"Robust Adversarial Reinforcement Learning" (RARL).

The force is written into ``data.xfrc_applied``, the Cartesian force and torque that MuJoCo
applies at a body's center of mass in world coordinates. MuJoCo keeps that array from one
``mj_step`` to the next until something overwrites it, so the wrapper owns its rows and
clears them whenever the push should stop.
"""

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

AXIS_INDEX = {"x": 0, "y": 1, "z": 2}

# Axes in which each task's robot can be pushed. The planar robots move in the x-z plane, so a
# push along y only loads the constraints. The pendulum's cart slides along x and its pole
# swings in the x-z plane. The Ant moves in 3D.
# NOTE: only Hopper and InvertedPendulum have profiles with measured bodies and bounds. The
# other entries follow from the models' joints and have not been run against a teacher.
DEFAULT_AXES = {
    "Hopper": "xz",
    "Walker2d": "xz",
    "HalfCheetah": "xz",
    "Ant": "xyz",
    "InvertedPendulum": "x",
    "InvertedDoublePendulum": "x",
}


def default_axes(env_id: str) -> str:
    """
    Return the push axes of a task, for example ``"xz"`` for ``Hopper-v5``.

    :raises ValueError: when the task has no entry in :data:`DEFAULT_AXES`
    """
    name = env_id.split("/")[-1].split("-")[0]
    if name not in DEFAULT_AXES:
        raise ValueError(
            f"no default push axes for {env_id!r}; pass axes explicitly, for example axes='xz' for a planar robot"
        )
    return DEFAULT_AXES[name]


def parse_axes(axes: str | Sequence[str]) -> tuple[int, ...]:
    """Turn axis names such as ``"xz"`` or ``["x", "z"]`` into ``xfrc_applied`` column indices."""
    names = list(axes)
    if not names or any(name not in AXIS_INDEX for name in names) or len(set(names)) != len(names):
        raise ValueError(f"invalid push axes {axes!r}; pass distinct names from 'x', 'y', 'z', for example 'xz'")
    return tuple(AXIS_INDEX[name] for name in names)


def body_ids(model: mujoco.MjModel, bodies: Sequence[str]) -> np.ndarray:
    """
    Return the MuJoCo ids of named bodies.

    :raises ValueError: when a name is not a body of ``model`` or names the world body
    """
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, index) for index in range(model.nbody)]
    ids = []
    for body in bodies:
        index = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
        if index < 1:
            # Id 0 is the world body: a force on it moves nothing.
            choices = [name for name in names[1:] if name]
            raise ValueError(f"body {body!r} is not a movable body of this model; choose from {choices}")
        ids.append(index)
    if len(set(ids)) != len(ids):
        raise ValueError(f"bodies {list(bodies)} name a body twice; list each body once")
    return np.array(ids, dtype=int)


class AdversarialForce(gym.Wrapper):
    """
    Push named bodies with a bounded force chosen by an adversary at every env step.

    The adversary's action lies in ``[-1, 1]^k`` with ``k = len(bodies) * len(axes)``, ordered
    body by body (``[body0 x, body0 z, body1 x, ...]`` for ``axes="xz"``). It is scaled by
    ``bound`` to newtons per axis and written into the ``xfrc_applied`` rows of those bodies before
    the env steps its physics, so it acts for every MuJoCo substep of the env step. Rows of other
    bodies are never read or written.

    The protagonist keeps the env's action space. The adversary's action comes from
    :meth:`set_adversary_action`, called before :meth:`step`, so one env can be stepped by the
    protagonist while another process picks the push. An action stays in effect until it is
    replaced, until :meth:`reset`, or until the push is disabled.

    :param env: a Gymnasium MuJoCo env, or a wrapper around one
    :param bodies: names of the bodies to push
    :param bound: maximum force per axis in newtons
    :param axes: world axes of the push; defaults to :func:`default_axes` of the env id
    """

    def __init__(self, env: gym.Env, bodies: Sequence[str], bound: float, axes: str | Sequence[str] | None = None):
        super().__init__(env)
        if not np.isfinite(bound) or bound < 0.0:
            raise ValueError(f"force bound must be a finite number of newtons >= 0, got {bound}")
        if axes is None:
            if env.spec is None:
                raise ValueError("the env has no spec to look up its push axes; pass axes, for example axes='xz'")
            axes = default_axes(env.spec.id)

        if isinstance(bodies, str) or not bodies:
            raise ValueError(f"bodies must be a non-empty list of body names, got {bodies!r}")

        self.bodies = list(bodies)
        self.bound = float(bound)
        self.axes = "".join(axes)
        self.model: mujoco.MjModel = self.env.unwrapped.model
        self.data: mujoco.MjData = self.env.unwrapped.data
        self._rows = body_ids(self.model, self.bodies)
        self._columns = parse_axes(self.axes)

        self.adversary_action_space = spaces.Box(-1.0, 1.0, shape=(len(self._rows) * len(self._columns),))
        self.adversary_action = np.zeros(self.adversary_action_space.shape)
        self.enabled = True

    @property
    def forces(self) -> np.ndarray:
        """The force in newtons that the next step applies, one row per body and one column per axis."""
        return self.bound * self.adversary_action.reshape(len(self._rows), len(self._columns))

    def set_adversary_action(self, action: np.ndarray) -> None:
        """
        Set the push of the next steps from an action in ``[-1, 1]^k``.

        Entries outside ``[-1, 1]`` are clipped, as SB3 clips the actions of a Gaussian policy.
        """
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.adversary_action_space.shape:
            raise ValueError(
                f"adversary action has shape {action.shape}, expected {self.adversary_action_space.shape} "
                f"({len(self._rows)} bodies x {len(self._columns)} axes)"
            )
        self.adversary_action = np.clip(action, -1.0, 1.0)

    def set_enabled(self, enabled: bool) -> None:
        """Switch the push on or off; switching off clears this wrapper's rows of ``xfrc_applied`` at once."""
        self.enabled = bool(enabled)
        if not self.enabled:
            self._clear()

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        self._clear()
        if self.enabled:
            for column_index, column in enumerate(self._columns):
                self.data.xfrc_applied[self._rows, column] = self.forces[:, column_index]
        return self.env.step(action)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        # MujocoEnv.reset clears the whole of data through mj_resetData. Clearing here as well
        # covers envs whose reset keeps data, and drops the last episode's action so that no push
        # carries over to the first step.
        self.adversary_action = np.zeros(self.adversary_action_space.shape)
        self._clear()
        return self.env.reset(seed=seed, options=options)

    def close(self) -> None:
        self._clear()
        super().close()

    def _clear(self) -> None:
        # All six columns, force and torque, of this wrapper's bodies and nothing else.
        self.data.xfrc_applied[self._rows, :] = 0.0
