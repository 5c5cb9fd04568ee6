"""Frozen observation normalization, the space in which the attack budget ε is measured."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th


@dataclass(frozen=True)
class ObservationNormalizer:
    """
    The map ``s = clip((o - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` with frozen
    statistics, as SB3's ``VecNormalize`` computes it with ``training=False``.

    The arrays are read-only, so no code path can update the statistics during distillation,
    attack or evaluation.
    """

    mean: np.ndarray
    var: np.ndarray
    clip_obs: float = 10.0
    epsilon: float = 1e-8
    count: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mean", "var"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if self.mean.shape != self.var.shape:
            raise ValueError(f"mean shape {self.mean.shape} and var shape {self.var.shape} differ")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mean.shape

    @classmethod
    def from_vecnormalize(cls, vec_normalize: Any) -> "ObservationNormalizer":
        """Copy the observation statistics out of an SB3 ``VecNormalize``."""
        if not vec_normalize.norm_obs:
            # NOTE: a VecNormalize that only scales rewards leaves observations raw, so ε is then
            # measured in raw units. The identity map below states that explicitly.
            shape = vec_normalize.observation_space.shape
            return cls.identity(shape)
        return cls(
            mean=vec_normalize.obs_rms.mean,
            var=vec_normalize.obs_rms.var,
            clip_obs=float(vec_normalize.clip_obs),
            epsilon=float(vec_normalize.epsilon),
            count=float(vec_normalize.obs_rms.count),
        )

    @classmethod
    def identity(cls, shape: tuple[int, ...]) -> "ObservationNormalizer":
        """Return a normalizer that leaves observations as they are (no shift, scale or clip)."""
        return cls(mean=np.zeros(shape), var=np.ones(shape) - 1e-8, clip_obs=float("inf"))

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Normalize raw observations (any leading batch shape) to float32."""
        obs = np.asarray(obs, dtype=np.float64)
        scaled = (obs - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    def normalize_tensor(self, obs: th.Tensor) -> th.Tensor:
        """Torch version of :meth:`normalize`, for exported graphs."""
        mean = th.as_tensor(self.mean, dtype=obs.dtype, device=obs.device)
        std = th.as_tensor(np.sqrt(self.var + self.epsilon), dtype=obs.dtype, device=obs.device)
        return th.clamp((obs - mean) / std, -self.clip_obs, self.clip_obs)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable form, stored inside the student's zip."""
        return {
            "mean": self.mean.tolist(),
            "var": self.var.tolist(),
            "clip_obs": self.clip_obs,
            "epsilon": self.epsilon,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ObservationNormalizer":
        return cls(
            mean=np.asarray(values["mean"]),
            var=np.asarray(values["var"]),
            clip_obs=float(values["clip_obs"]),
            epsilon=float(values["epsilon"]),
            count=float(values.get("count", 0.0)),
        )
