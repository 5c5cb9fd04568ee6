"""
Experiment tracking with Weights & Biases (W&B) that never stops or stalls a run.

The mode is chosen before ``wandb.init``: online only when the user configured W&B, offline
otherwise, so no run waits on the network. Every call into W&B goes through :class:`Tracker`,
which logs the first failure once and then turns tracking off for the rest of the run.
"""

import logging
import netrc
import numbers
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import KVWriter

from rl_advkd.tracking_options import DEFAULT_PROJECT, TrackingOptions

logger = logging.getLogger(__name__)

WANDB_HOST = "api.wandb.ai"
# Seconds that an online wandb.init may wait for the server before it fails (90 by default in wandb 0.31).
INIT_TIMEOUT_S = 15.0
# The history key that all metrics are plotted against: environment steps.
STEP_KEY = "global_step"


def has_netrc_entry(host: str = WANDB_HOST) -> bool:
    """Tell whether the netrc file (``$NETRC``, else ``~/.netrc``) has credentials for ``host``."""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if not path.is_file():
        return False
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def choose_mode() -> tuple[str, str]:
    """
    Choose the W&B mode from the environment without contacting any server.

    ``WANDB_MODE`` wins when set. Otherwise the run is online when an API key is in
    ``WANDB_API_KEY`` or the netrc file has an entry for the W&B host, and offline when not.

    :return: the mode (``online``, ``offline`` or ``disabled``) and the reason, for the log
    """
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode:
        # W&B still accepts the old names of its modes.
        mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
        return mode, "WANDB_MODE is set"
    if os.environ.get("WANDB_DISABLED", "").strip().lower() in ("true", "1", "yes"):
        return "disabled", "WANDB_DISABLED is set"
    if os.environ.get("WANDB_API_KEY"):
        return "online", "WANDB_API_KEY is set"
    host = re.sub(r"^https?://", "", os.environ.get("WANDB_BASE_URL", WANDB_HOST)).rstrip("/")
    if has_netrc_entry(host):
        return "online", f"the netrc file has an entry for {host}"
    return "offline", "no W&B API key is configured"


class Tracker:
    """
    A W&B run, or nothing: every method is a no-op while tracking is off.

    Any exception raised inside W&B is logged once as a warning, then tracking is turned off,
    so training and evaluation go on without it. Use :meth:`start` to create one.
    """

    def __init__(self, run: Any = None) -> None:
        self.run = run
        self.failed = False

    @property
    def active(self) -> bool:
        return self.run is not None and not self.failed

    @classmethod
    def start(
        cls,
        options: TrackingOptions | None,
        run_dir: Path,
        config: dict[str, Any],
        job_type: str,
        group: str,
        name: str,
    ) -> "Tracker":
        """
        Start a W&B run for ``options.track``, else return an inactive tracker.

        :param run_dir: the run folder; W&B's files go to ``run_dir/wandb`` unless ``WANDB_DIR`` is set
        :param config: the resolved configuration of the run
        :param job_type: ``teacher``, ``distill`` or ``evaluate``
        :param group: the default group, used when neither ``--wandb-group`` nor ``WANDB_RUN_GROUP`` is set
        :param name: the default run name, used when ``WANDB_NAME`` is not set
        """
        if options is None or not options.track:
            return cls()
        mode, reason = choose_mode()
        if mode == "disabled":
            logger.info("W&B tracking is off because %s", reason)
            return cls()

        tracker = cls()
        tracker.run = tracker._call("init", _init_run, options, run_dir, config, job_type, group, name, mode)
        if tracker.run is None:
            return tracker
        tracker._call("define_metric", _define_step_metric, tracker.run)

        if mode == "offline":
            sync_dir = Path(tracker.run.dir).parent
            logger.info("W&B runs offline (%s); upload it later with: wandb sync %s", reason, sync_dir)
        else:
            logger.info("W&B run %s (%s)", getattr(tracker.run, "url", None) or tracker.run.id, reason)
        return tracker

    def _call(self, action: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Call into W&B; on the first exception, log it and turn tracking off."""
        if self.failed:
            return None
        try:
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any W&B error must leave the run going
            self.failed = True
            logger.warning(
                "W&B %s failed, continuing without tracking for the rest of the run (%s: %s)",
                action,
                type(error).__name__,
                error,
            )
            return None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Add one history row of ``metrics`` at ``step`` environment steps."""
        if self.active and metrics:
            self._call("log", self.run.log, {**metrics, STEP_KEY: step})

    def log_results_table(self, record: dict[str, Any], key: str = "evaluation/results") -> None:
        """Log the evaluation results as a ``wandb.Table``: one row per policy and attack."""
        if self.active:
            self._call("table log", _log_results_table, self.run, record, key)

    def log_image(self, path: Path, key: str) -> None:
        """Log a PNG file as an image."""
        if self.active:
            self._call("image log", _log_media, self.run, key, "Image", path)

    def log_video(self, path: Path, key: str) -> None:
        """Log an mp4 file as a video."""
        if self.active:
            self._call("video log", _log_media, self.run, key, "Video", path)

    def log_artifact(self, name: str, kind: str, files: list[Path], metadata: dict[str, Any]) -> None:
        """Log the existing files of ``files`` as one artifact."""
        if self.active:
            self._call("artifact log", _log_artifact, self.run, name, kind, files, metadata)

    def writer(self) -> "WandbWriter":
        """Return an SB3 logger output that sends every numeric value to this run."""
        return WandbWriter(self)

    def finish(self, exit_code: int = 0) -> None:
        """Finish the run; after a failure, W&B is still asked to close what it can."""
        if self.run is None:
            return
        run, self.run = self.run, None
        if self.failed:
            exit_code = exit_code or 1
        try:
            run.finish(exit_code=exit_code)
        except Exception as error:  # noqa: BLE001
            logger.warning("W&B finish failed (%s: %s)", type(error).__name__, error)


def _init_run(
    options: TrackingOptions, run_dir: Path, config: dict[str, Any], job_type: str, group: str, name: str, mode: str
) -> Any:
    import wandb

    run_dir.mkdir(parents=True, exist_ok=True)
    # NOTE: in online mode only init is bounded by INIT_TIMEOUT_S. Uploads run in W&B's own
    # process, and finish() waits for them to end, so a slow network can delay the end of a run.
    settings = wandb.Settings(mode=mode, init_timeout=INIT_TIMEOUT_S)
    return wandb.init(
        project=options.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        entity=options.entity,
        group=options.group or os.environ.get("WANDB_RUN_GROUP") or group,
        name=os.environ.get("WANDB_NAME") or name,
        tags=options.tags or None,
        job_type=job_type,
        config=config,
        # Read here rather than left to W&B, which reads WANDB_DIR once per process.
        dir=os.environ.get("WANDB_DIR") or str(run_dir),
        settings=settings,
    )


def _define_step_metric(run: Any) -> None:
    run.define_metric(STEP_KEY)
    run.define_metric("*", step_metric=STEP_KEY)


def _log_results_table(run: Any, record: dict[str, Any], key: str) -> None:
    import wandb

    from rl_advkd.evaluation import row_label

    columns = ["policy", "attack", "epsilon", "mean_return", "std_return", "falls", "episodes", "mean_length"]
    table = wandb.Table(columns=columns)
    for policy in record["policies"]:
        for row in policy["rows"]:
            label = row_label({**row, "attack": row.get("worst_of", row["attack"])})
            attack = f"worst ({label})" if row["attack"] == "worst" else label
            table.add_data(
                policy["name"],
                attack,
                row["epsilon"],
                row["mean"],
                row["std"],
                row["falls"],
                row["episodes"],
                row["mean_length"],
            )
    run.log({key: table})


def _log_media(run: Any, key: str, kind: str, path: Path) -> None:
    import wandb

    media = wandb.Image(str(path)) if kind == "Image" else wandb.Video(str(path), format="mp4")
    run.log({key: media})


def _log_artifact(run: Any, name: str, kind: str, files: list[Path], metadata: dict[str, Any]) -> None:
    import wandb

    artifact = wandb.Artifact(name, type=kind, metadata=metadata)
    for path in files:
        if path.is_file():
            artifact.add_file(str(path))
    run.log_artifact(artifact)


def artifact_name(*parts: str) -> str:
    """Join ``parts`` into a valid artifact name: letters, digits, ``-``, ``_`` and ``.`` only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-")


class WandbWriter(KVWriter):
    """
    SB3 logger output that sends each dump to a :class:`Tracker` as one history row.

    SB3's keys pass through unchanged, and the row is plotted against the step of the dump,
    which SB3's algorithms set to the environment steps so far. Values that are not numbers
    (text, figures, videos) and keys excluded for ``"wandb"`` are left out.
    """

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        metrics = {}
        for key, value in key_values.items():
            excluded = key_excluded.get(key)
            if excluded is not None and "wandb" in excluded:
                continue
            number = _as_number(value)
            if number is not None:
                metrics[key] = number
        self.tracker.log_metrics(metrics, step)

    def close(self) -> None:
        pass


def _as_number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    if hasattr(value, "numel") and hasattr(value, "item") and value.numel() == 1:
        return value.item()
    return None
