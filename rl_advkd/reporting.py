"""
Outputs of a finished run, for its folder and its W&B run: evaluation scalars, a results plot,
videos of the policy and the model artifacts.
"""

import logging
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import Logger

from rl_advkd.attacks import OBSERVATION_ATTACKS
from rl_advkd.play import PLAY_ATTACKS
from rl_advkd.tracking import Tracker, artifact_name
from rl_advkd.tracking_options import TrackingOptions

logger = logging.getLogger(__name__)

PLOT_FILE = "results.png"
VIDEO_DIR = "videos"


def record_evaluation(sb3_logger: Logger, record: dict[str, Any], step: int) -> None:
    """
    Record each row's mean return, standard deviation and falls under ``eval/<policy>/<attack>/``
    and dump them at ``step``, so they reach TensorBoard and every other output of the logger.

    A record of several budgets ε adds the budget to the key of each observation row and worst
    row, ``eval/<policy>/<attack>@<ε>/``, so rows at different budgets keep separate keys.
    """
    from rl_advkd.evaluation import row_label

    several_budgets = len(record.get("epsilons", [])) > 1
    for policy in record["policies"]:
        for row in policy["rows"]:
            label = row_label(row).replace(" ", "")
            if several_budgets and (row["attack"] in OBSERVATION_ATTACKS or row["attack"] == "worst"):
                label += f"@{row['epsilon']:g}"
            prefix = f"eval/{policy['name']}/{label}"
            sb3_logger.record(f"{prefix}/mean_return", row["mean"])
            sb3_logger.record(f"{prefix}/std_return", row["std"])
            sb3_logger.record(f"{prefix}/falls", row["falls"])
    sb3_logger.dump(step)


def strongest_observation_attack(rows: list[dict[str, Any]], epsilon: float | None = None) -> str | None:
    """
    Return the observation attack with the lowest mean return among ``rows``, ``natural`` excluded.

    The ``worst`` row can name a dynamics attack, which a video of observations cannot show, so
    the lowest observation attack is taken instead. Only attacks that a video can replay count
    (:data:`~rl_advkd.play.PLAY_ATTACKS`), so ``critic`` and ``optimal`` rows are skipped.
    ``None`` when no such attack was evaluated.

    :param epsilon: consider only rows at this budget; ``None`` considers every row
    """
    candidates = [
        row
        for row in rows
        if row["attack"] in PLAY_ATTACKS
        and row["attack"] != "natural"
        and (epsilon is None or row["epsilon"] == epsilon)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda row: row["mean"])["attack"]


def write_videos(
    policy_path: Path,
    env_id: str,
    rows: list[dict[str, Any]],
    epsilon: float,
    seed: int,
    out_dir: Path,
    max_frames: int,
    prefix: str | None = None,
) -> dict[str, Path]:
    """
    Write a video of the policy without attack and one under its strongest observation attack.

    :param epsilon: the budget of the attacked video; the strongest attack is chosen among the
        rows at this budget
    :param prefix: the start of the file names, ``<prefix>-<attack>.mp4``; defaults to the stem of ``policy_path``

    :return: the written files by W&B key (``video/natural``, ``video/<attack>``); a video that
        could not be rendered is missing, and the reason is logged
    """
    from rl_advkd.rendering import record_policy_video

    attacks = ["natural"]
    strongest = strongest_observation_attack(rows, epsilon)
    if strongest is not None:
        attacks.append(strongest)

    videos = {}
    for attack in attacks:
        path = out_dir / f"{prefix or policy_path.stem}-{attack}.mp4"
        budget = 0.0 if attack == "natural" else epsilon
        # A video is optional output, so no error in it may end a run whose results are written.
        try:
            written = record_policy_video(policy_path, env_id, path, attack, budget, seed, max_frames)
        except Exception as error:  # noqa: BLE001
            logger.warning("could not write video %s (%s: %s)", path, type(error).__name__, error)
            continue
        if written is not None:
            videos[f"video/{attack}"] = written
            logger.info("video of %s under %s written to %s", policy_path.name, attack, written)
    return videos


def report_results(
    tracker: Tracker,
    options: TrackingOptions | None,
    run_dir: Path,
    record: dict[str, Any],
    policy_path: Path,
    seed: int,
) -> None:
    """
    Add the plot and videos of a finished evaluation to ``run_dir`` and log them with the results.

    The videos show the last policy of ``record`` (the student of a distillation), loaded from
    ``policy_path``. Nothing is written when neither ``--track`` nor ``--video`` was passed.

    :param seed: the reset seed of the video episodes
    """
    if options is None or not options.wants_video:
        return

    tracker.log_results_table(record)

    if options.track:
        # Plotting is optional output, so a failure here must not lose the results already written.
        try:
            from rl_advkd.plots import plot_results

            plot = plot_results(record, run_dir / PLOT_FILE)
            tracker.log_image(plot, "evaluation/returns")
        except Exception as error:  # noqa: BLE001
            logger.warning("could not draw the results plot (%s: %s)", type(error).__name__, error)

    rows = record["policies"][-1]["rows"]
    videos = write_videos(
        policy_path, record["env_id"], rows, record["epsilon"], seed, run_dir / VIDEO_DIR, options.video_frames
    )
    for key, path in videos.items():
        tracker.log_video(path, key)


def log_model_artifact(tracker: Tracker, model_path: Path, env_id: str, kind: str, extra_files: list[Path]) -> None:
    """
    Export a saved policy to ONNX next to it and log both, with ``extra_files``, as one artifact.

    :param model_path: a student zip or a teacher folder
    :param kind: ``student`` or ``teacher``, the first part of the artifact name
    """
    if not tracker.active:
        return
    from rl_advkd.export import export_policy

    files = [model_path] if model_path.is_file() else []
    try:
        onnx_path, metadata = export_policy(model_path, "onnx", env_id=env_id)
        files.append(onnx_path)
    except Exception as error:  # noqa: BLE001 - the SB3 form is still worth logging without the ONNX one
        logger.warning("could not export %s to ONNX for W&B (%s: %s)", model_path, type(error).__name__, error)
        metadata = {"env_id": env_id}
    name = artifact_name(kind, env_id)
    tracker.log_artifact(name, "model", files + extra_files, _flat_metadata(metadata))


def _flat_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Keep the scalar entries of the export metadata; W&B shows those in the artifact's page."""
    return {key: value for key, value in metadata.items() if isinstance(value, (str, int, float, bool))}
