"""A rollout buffer that also keeps the clean observations and the teacher's targets."""

from collections.abc import Generator
from typing import NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer


class AdvKDRolloutSamples(NamedTuple):
    """SB3's rollout samples plus what the distillation loss needs."""

    observations: th.Tensor  # what the student acted on (perturbed on attacked steps)
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    clean_observations: th.Tensor  # the state before any attack: the teacher's input
    teacher_means: th.Tensor
    teacher_log_stds: th.Tensor


class AdvKDRolloutBuffer(RolloutBuffer):
    """
    :class:`RolloutBuffer` that stores, next to each observation the student acted on, the
    clean observation and the teacher's Gaussian on that clean observation.

    The PPO term trains on ``observations`` (the inputs the actions were sampled from, so the
    probability ratios are exact); the distillation terms train on ``clean_observations``.
    """

    _extra_names = ("clean_observations", "teacher_means", "teacher_log_stds")

    def reset(self) -> None:
        super().reset()
        self.clean_observations = np.zeros_like(self.observations)
        self.teacher_means = np.zeros_like(self.actions, dtype=np.float32)
        self.teacher_log_stds = np.zeros_like(self.actions, dtype=np.float32)

    def add(self, *args, clean_obs: np.ndarray, **kwargs) -> None:  # type: ignore[override]
        """Add one step; ``clean_obs`` is the observation before the attack."""
        self.clean_observations[self.pos] = np.asarray(clean_obs)
        super().add(*args, **kwargs)

    def set_teacher_targets(self, means: np.ndarray, log_stds: np.ndarray) -> None:
        """Store the teacher's Gaussian for every clean observation, each (buffer_size, n_envs, action_dim)."""
        self.teacher_means[...] = means
        self.teacher_log_stds[...] = log_stds

    def get(self, batch_size: int | None = None) -> Generator[AdvKDRolloutSamples, None, None]:  # type: ignore[override]
        if not self.generator_ready:
            for name in self._extra_names:
                setattr(self, name, self.swap_and_flatten(getattr(self, name)))
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> AdvKDRolloutSamples:  # type: ignore[override]
        samples = super()._get_samples(batch_inds, env)
        extra = (getattr(self, name)[batch_inds] for name in self._extra_names)
        return AdvKDRolloutSamples(*samples, *map(self.to_torch, extra))
