"""One summary line per training iteration, instead of SB3's stdout table, for long runs."""

import logging
from typing import Any

from stable_baselines3.common.logger import KVWriter

logger = logging.getLogger("rl_advkd.train")

# Keys shown on the line, in order, with their short labels.
SUMMARY_KEYS = {
    "time/total_timesteps": "steps",
    "rollout/ep_rew_mean": "return",
    "train/kl_teacher": "kl",
    "train/kl_teacher_adv": "kl_adv",
    "train/value_loss": "value_loss",
    "time/fps": "fps",
}


class SummaryLineWriter(KVWriter):
    """
    SB3 logger output that writes one line per dump through :mod:`logging`.

    The full table still goes to ``log.txt``, ``progress.csv`` and TensorBoard.

    :param total_timesteps: the run's budget, shown next to the step count
    """

    def __init__(self, total_timesteps: int) -> None:
        self.total_timesteps = total_timesteps

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        # Only training iterations carry a step count; other dumps (final evaluation scalars) are skipped.
        if "time/total_timesteps" not in key_values:
            return
        parts = []
        for key, label in SUMMARY_KEYS.items():
            if key not in key_values:
                continue
            value = key_values[key]
            if key == "time/total_timesteps":
                parts.append(f"{label} {value}/{self.total_timesteps}")
            elif isinstance(value, float):
                parts.append(f"{label} {value:.4g}")
            else:
                parts.append(f"{label} {value}")
        if parts:
            logger.info(" | ".join(parts))

    def close(self) -> None:
        pass
