"""
Checkpoints of a distillation run, so that no run is lost to Ctrl-C or a crash.

A checkpoint is the folder ``<run>/checkpoint/``: the student zip with its optimizer state, the
force adversary's zip, the random states of torch, numpy, Python and the attacks, and the step
counters. It is written at the start of a rollout, after the previous update, so the step count
matches the weights. ``rl-advkd distill --resume RUN_DIR`` continues from it to the original budget.
"""

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from rl_advkd.advkd import AdvKD
from rl_advkd.provenance import utc_now, write_json

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
RANDOM_STATE_FILE = "random_state.pt"
STUDENT_FILE = "student.zip"
ADVERSARY_FILE = "force_adversary.zip"


class DistillCheckpoint(BaseCallback):
    """
    Write a checkpoint every ``every`` environment steps and keep count of the trained steps.

    :param run_dir: the run folder; the checkpoint goes to ``run_dir/checkpoint``
    :param every: environment steps between checkpoints; 0 writes none on its own
    :param adversary: the force adversary, saved with the student when there is one
    """

    def __init__(self, run_dir: Path, every: int, adversary: PPO | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.every = every
        self.adversary = adversary
        self.completed_steps = 0
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self.completed_steps = self._last_saved = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        # The previous rollout has been trained on: its steps now count as done.
        self.completed_steps = self.model.num_timesteps
        if self.every and self.completed_steps - self._last_saved >= self.every:
            self.save()

    def _on_step(self) -> bool:
        return True

    def save(self) -> Path:
        """Write the checkpoint at ``completed_steps``, replacing the previous one atomically."""
        model = self.model
        folder = self.run_dir / CHECKPOINT_DIR
        tmp = self.run_dir / (CHECKPOINT_DIR + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

        # The steps of an unfinished rollout were never trained on, so they are not counted.
        counted = model.num_timesteps
        model.num_timesteps = self.completed_steps
        try:
            model.save(tmp / STUDENT_FILE)
        finally:
            model.num_timesteps = counted
        if self.adversary is not None:
            self.adversary.save(tmp / ADVERSARY_FILE)
        th.save(random_states(model), tmp / RANDOM_STATE_FILE)
        write_json(
            tmp / STATE_FILE,
            {
                "num_timesteps": self.completed_steps,
                "n_updates": model._n_updates,
                "episode_num": model._episode_num,
                "adversary_timesteps": self.adversary.num_timesteps if self.adversary is not None else None,
                "saved": utc_now(),
            },
        )

        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        self._last_saved = self.completed_steps
        logger.info("checkpoint at %d steps in %s", self.completed_steps, folder)
        return folder


def random_states(model: AdvKD) -> dict[str, Any]:
    """Return the random states that training draws from, as tensors and plain values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": th.get_rng_state(),
        "numpy": [kind, th.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }
    if model._attack_generator is not None:
        states["attacks"] = model._attack_generator.get_state()
    return states


def restore_random_states(model: AdvKD, states: dict[str, Any]) -> None:
    """Set the random states saved by :func:`random_states`."""
    th.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "attacks" in states:
        model._attack_generator = th.Generator()
        model._attack_generator.set_state(states["attacks"])


def read_checkpoint(run_dir: Path) -> dict[str, Any]:
    """
    Read a checkpoint's counters and random states.

    :raise FileNotFoundError: when ``run_dir`` has no complete checkpoint
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not (folder / STATE_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {STATE_FILE}")
    state = json.loads((folder / STATE_FILE).read_text())
    state["random_states"] = th.load(folder / RANDOM_STATE_FILE, weights_only=True)
    state["folder"] = folder
    return state
