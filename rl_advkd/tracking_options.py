"""The ``--track`` family of command-line options, kept free of heavy imports for ``--help``."""

import argparse
from dataclasses import dataclass, field

from rl_advkd.errors import UsageError

DEFAULT_PROJECT = "rl_advkd"


@dataclass
class TrackingOptions:
    """
    Options of a run's records beyond its run folder, from the ``--track`` family of options.

    :param track: send the run to W&B (online or offline)
    :param video: write videos of the policy into the run folder even without ``track``
    :param project: W&B project; ``None`` takes ``WANDB_PROJECT``, else :data:`DEFAULT_PROJECT`
    :param entity: W&B entity; ``None`` takes ``WANDB_ENTITY``, else the account's default
    :param group: W&B group; ``None`` takes ``WANDB_RUN_GROUP``, else ``<ENV_ID>/<variant>``
    :param tags: W&B tags; empty takes ``WANDB_TAGS``
    :param video_frames: frames per video, from the start of the episode
    """

    track: bool = False
    video: bool = False
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    video_frames: int = 1000

    @property
    def wants_video(self) -> bool:
        return self.track or self.video


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--track``, ``--video`` and the ``--wandb-*`` options to a subcommand."""
    group = parser.add_argument_group("tracking")
    group.add_argument(
        "--track",
        action="store_true",
        help="record the run in Weights & Biases: online when W&B is configured (API key, netrc entry or "
        "WANDB_MODE=online), offline otherwise; also writes videos and a results plot into the run folder",
    )
    group.add_argument("--video", action="store_true", help="write videos of the policy into the run folder")
    group.add_argument("--video-frames", type=int, default=1000, help="frames per video (default: %(default)s)")
    group.add_argument("--wandb-project", help=f"W&B project (default: $WANDB_PROJECT, else {DEFAULT_PROJECT})")
    group.add_argument("--wandb-entity", help="W&B user or team (default: $WANDB_ENTITY, else the account's)")
    group.add_argument("--wandb-group", help="W&B run group (default: $WANDB_RUN_GROUP, else <ENV>/<variant>)")
    group.add_argument("--wandb-tags", help="comma-separated W&B tags (default: $WANDB_TAGS)")


def tracking_options(args: argparse.Namespace) -> TrackingOptions:
    """
    Read the tracking options from parsed arguments.

    :raise UsageError: for a ``--video-frames`` below 1
    """
    if args.video_frames < 1:
        raise UsageError(f"--video-frames must be >= 1, got {args.video_frames}")
    tags = [tag.strip() for tag in (args.wandb_tags or "").split(",") if tag.strip()]
    return TrackingOptions(
        track=args.track,
        video=args.video,
        project=args.wandb_project,
        entity=args.wandb_entity,
        group=args.wandb_group,
        tags=tags,
        video_frames=args.video_frames,
    )
