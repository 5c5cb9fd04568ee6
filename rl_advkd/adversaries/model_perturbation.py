"""
Scaled body masses and geom friction, the model errors that Pinto et al. (2017), "Robust
Adversarial Reinforcement Learning", use to test policies away from their training dynamics.
"""

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np


def _check_factor(name: str, factor: float) -> float:
    factor = float(factor)
    if not np.isfinite(factor) or factor <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {factor}; 1.0 keeps the nominal model")
    return factor


def _ids(model: mujoco.MjModel, kind: mujoco.mjtObj, names: Sequence[str] | None, count: int) -> np.ndarray:
    """Return the ids of named bodies or geoms, or all ids when ``names`` is ``None``."""
    if names is None:
        return np.arange(count)
    if isinstance(names, str):
        raise ValueError(f"pass a list of names, not the string {names!r}")
    ids = []
    for name in names:
        index = mujoco.mj_name2id(model, kind, name)
        if index < 0:
            choices = [mujoco.mj_id2name(model, kind, i) for i in range(count)]
            raise ValueError(f"{name!r} is not a {kind.name[6:].lower()} of this model; choose from {choices}")
        ids.append(index)
    return np.array(ids, dtype=int)


class ModelPerturbation(gym.Wrapper):
    """
    Run a MuJoCo env with body masses and geom friction scaled from their nominal values.

    The nominal values are copied when the wrapper is built, and every change starts from that
    copy, never from the current model, so repeated resets do not compound the factors. The
    factors are written into the model at each :meth:`reset`, followed by ``mj_setConst``, which
    recomputes the constants derived from masses (subtree masses, inverse weights, the mean
    inertia). ``mj_setConst`` also sets ``data.qpos`` to ``qpos0``, so changing the model in the
    middle of an episode would move the robot. That is why :meth:`set_factors` takes effect at
    the next reset.

    Mass scaling multiplies ``body_mass`` and, unless ``scale_inertia`` is false, ``body_inertia``
    by the same factor, as if the density of the body changed. Friction scaling multiplies all
    three coefficients (sliding, torsional, rolling) of each ``geom_friction`` row. MuJoCo gives a
    contact the larger friction of its two geoms, so scaling only the robot's geoms while the floor
    keeps a larger coefficient can leave the contact unchanged.

    :param env: a Gymnasium MuJoCo env, or a wrapper around one
    :param mass_factor: factor on the masses of ``bodies``
    :param friction_factor: factor on the friction of ``geoms``
    :param bodies: names of the bodies to scale; ``None`` scales every body
    :param geoms: names of the geoms to scale; ``None`` scales every geom, the floor included
    :param scale_inertia: scale the rotational inertia together with the mass
    """

    def __init__(
        self,
        env: gym.Env,
        mass_factor: float = 1.0,
        friction_factor: float = 1.0,
        bodies: Sequence[str] | None = None,
        geoms: Sequence[str] | None = None,
        scale_inertia: bool = True,
    ):
        super().__init__(env)
        self.model: mujoco.MjModel = self.env.unwrapped.model
        self.data: mujoco.MjData = self.env.unwrapped.data
        self.bodies = None if bodies is None else list(bodies)
        self.geoms = None if geoms is None else list(geoms)
        self.scale_inertia = bool(scale_inertia)
        self._body_ids = _ids(self.model, mujoco.mjtObj.mjOBJ_BODY, bodies, self.model.nbody)
        self._geom_ids = _ids(self.model, mujoco.mjtObj.mjOBJ_GEOM, geoms, self.model.ngeom)

        self.nominal_body_mass = self.model.body_mass.copy()
        self.nominal_body_inertia = self.model.body_inertia.copy()
        self.nominal_geom_friction = self.model.geom_friction.copy()

        self.mass_factor = 1.0
        self.friction_factor = 1.0
        self.set_factors(mass_factor, friction_factor)

    def set_factors(self, mass_factor: float | None = None, friction_factor: float | None = None) -> None:
        """Set the factors that the next :meth:`reset` applies; ``None`` keeps a factor as it is."""
        if mass_factor is not None:
            self.mass_factor = _check_factor("mass_factor", mass_factor)
        if friction_factor is not None:
            self.friction_factor = _check_factor("friction_factor", friction_factor)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self._write(self.mass_factor, self.friction_factor)
        return self.env.reset(seed=seed, options=options)

    def restore(self) -> None:
        """
        Write the nominal masses, inertia and friction back into the model.

        The arrays become bit-identical to the copies taken at construction. ``data.qpos`` is set
        to ``qpos0`` as a side effect, so reset the env before stepping it again.
        """
        self._write(1.0, 1.0)

    def close(self) -> None:
        self.restore()
        super().close()

    def _write(self, mass_factor: float, friction_factor: float) -> None:
        # Copy every nominal array first, so that untargeted entries and a factor of 1.0 give
        # back the nominal bits exactly.
        np.copyto(self.model.body_mass, self.nominal_body_mass)
        np.copyto(self.model.body_inertia, self.nominal_body_inertia)
        np.copyto(self.model.geom_friction, self.nominal_geom_friction)

        if mass_factor != 1.0:
            self.model.body_mass[self._body_ids] = self.nominal_body_mass[self._body_ids] * mass_factor
            if self.scale_inertia:
                self.model.body_inertia[self._body_ids] = self.nominal_body_inertia[self._body_ids] * mass_factor
        if friction_factor != 1.0:
            self.model.geom_friction[self._geom_ids] = self.nominal_geom_friction[self._geom_ids] * friction_factor

        # Masses enter constants that MuJoCo computes once at compile time.
        mujoco.mj_setConst(self.model, self.data)
