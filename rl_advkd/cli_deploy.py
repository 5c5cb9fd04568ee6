"""Subcommands ``export`` and ``play`` of the command line."""

import argparse
from pathlib import Path

import numpy as np

from rl_advkd.errors import UsageError
from rl_advkd.play import PLAY_ATTACKS

# rl_advkd.export.FORMATS, repeated so that building the parser does not import torch.
FORMATS = ("onnx", "torchscript")


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a student or a teacher as one ONNX or TorchScript graph",
        description=(
            "Write one graph from the raw float32 observation to the action the env receives: frozen "
            "normalization with its clip, the Gaussian mean, and the clip to the action bounds. The env id, "
            "spaces, ε, teacher hash, rl_advkd version and the results.json summary next to the policy "
            "travel inside the file."
        ),
    )
    parser.add_argument("--policy", required=True, help="student .zip, or a teacher folder or model .zip")
    parser.add_argument(
        "--format", choices=FORMATS, help="output format (default: from the suffix of --out, .onnx or .pt; else onnx)"
    )
    parser.add_argument("--out", help="output file (default: the policy's path with .onnx or .pt)")
    parser.add_argument("--env", help="Gymnasium env id (default: the one recorded with the policy)")
    parser.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from rl_advkd.export import export_policy, infer_format

    fmt = infer_format(args.out, args.format)
    out, metadata = export_policy(args.policy, fmt, args.out, args.env)

    epsilon = "none" if metadata["epsilon"] is None else f"{metadata['epsilon']:g}"
    evaluation = metadata["evaluation"]["source"] if metadata["evaluation"] else "none (no results.json next to the policy)"
    print(f"exported the {metadata['policy']} for {metadata['env_id']} to {out} ({fmt}, {out.stat().st_size:,} bytes)")
    print(f"ε: {epsilon}; teacher sha256: {metadata['teacher_sha256']}; evaluation summary: {evaluation}")
    return 0


def _add_play(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "play",
        help="run episodes with an exported or saved policy, optionally attacked and on video",
        description="Play deterministic episodes and print each return and their mean.",
    )
    parser.add_argument(
        "--policy", required=True, help="exported .onnx or .pt file, student .zip, or teacher folder or model .zip"
    )
    parser.add_argument("--env", help="Gymnasium env id (default: the one recorded with the policy)")
    parser.add_argument("--episodes", type=int, default=5, help="episodes to play (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed + i")
    parser.add_argument(
        "--attack",
        choices=PLAY_ATTACKS,
        default="natural",
        help="observation attack (default: %(default)s); mad needs a .zip policy because it uses gradients",
    )
    parser.add_argument(
        "--epsilon",
        type=float,
        help="ℓ∞ attack budget in normalized units (default: the student's, else the profile's)",
    )
    parser.add_argument("--video", help="write every frame to this mp4 file (needs MUJOCO_GL=egl or osmesa headless)")
    parser.set_defaults(handler=_run_play)


def _attack_epsilon(args: argparse.Namespace, recorded: float | None, env_id: str) -> float:
    from rl_advkd.profiles import check_epsilon, load_profile

    if args.epsilon is not None:
        epsilon = args.epsilon
    elif recorded is not None:
        epsilon = recorded
    else:
        epsilon = load_profile(env_id).epsilon
    check_epsilon(epsilon)
    return float(epsilon)


def _run_play(args: argparse.Namespace) -> int:
    from rl_advkd.play import ObservationAttacker, VideoRecorder, load_play_policy, play_episodes

    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    policy = load_play_policy(args.policy, args.env)
    env_id = policy.env_id

    attacker = None
    label = "no attack"
    if args.attack != "natural":
        epsilon = _attack_epsilon(args, policy.epsilon, env_id)
        attacker = ObservationAttacker(policy, args.attack, epsilon, seed=args.seed)
        label = f"{args.attack} attack, ε={epsilon:g}"
    video = VideoRecorder(Path(args.video)) if args.video else None

    print(f"playing {_count(args.episodes, 'episode')} of {env_id} with {policy.path} ({policy.form}, {label})")
    returns, falls = [], 0
    for result in play_episodes(policy, env_id, args.episodes, seed=args.seed, attacker=attacker, video=video):
        fell = ", fell" if result.fell else ""
        print(f"episode {result.index + 1} (seed {result.seed}): return {result.episode_return:.1f} over {result.length} steps{fell}")
        returns.append(result.episode_return)
        falls += int(result.fell)
    print(
        f"mean return over {_count(len(returns), 'episode')}: {np.mean(returns):.1f} ± {np.std(returns):.1f} "
        f"({_count(falls, 'fall')})"
    )

    if video is not None:
        if video.close():
            print(f"video written to {video.path} ({video.frames_written} frames)")
        else:
            print("no video written: rendering failed (see the warning above)")
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export`` and ``play``."""
    _add_export(subparsers)
    _add_play(subparsers)
