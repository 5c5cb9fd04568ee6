"""Experiment tracking: offline W&B runs, videos, plots and failures inside W&B, on tiny real runs."""

import ctypes.util
import logging
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wandb
from wandb.proto import wandb_internal_pb2

from conftest import PENDULUM
from rl_advkd.cli import main
from rl_advkd.tracking import Tracker, WandbWriter, choose_mode
from rl_advkd.tracking_options import TrackingOptions

TINY_DISTILL = (
    "distill",
    "--env", PENDULUM,
    "--total-timesteps", "512",
    "--n-envs", "2",
    "--n-steps", "128",
    "--eval-episodes", "2",
    "--video-frames", "20",
)  # fmt: skip

# Variables that would make W&B go online or write outside the test's folder.
WANDB_VARIABLES = ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_DISABLED", "WANDB_BASE_URL", "WANDB_NAME")


def _unconfigured_env(home: Path) -> dict[str, str]:
    """The process environment with no W&B configuration: no key, no mode, an empty home and netrc."""
    env = {key: value for key, value in os.environ.items() if key not in WANDB_VARIABLES}
    env.update({"HOME": str(home), "NETRC": str(home / "netrc"), "OMP_NUM_THREADS": "1"})
    return env


@pytest.fixture
def unconfigured_wandb(tmp_path, monkeypatch) -> Path:
    """Clear the W&B configuration of this process, as on a machine where W&B was never set up."""
    for key in WANDB_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path


def read_wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """
    Read the records of a ``.wandb`` file.

    The file is a LevelDB-style log: a 7-byte file header, then 32 KiB blocks of chunks, each
    with a 7-byte header (CRC32, little-endian length, type). A record is one FULL chunk or a
    FIRST chunk, MIDDLE chunks and a LAST chunk.
    """
    data = path.read_bytes()
    block_size = 32 * 1024
    position = 7
    chunks = b""
    records = []
    while position + 7 <= len(data):
        left_in_block = block_size - position % block_size
        if left_in_block < 7:
            position += left_in_block
            continue
        _, length, chunk_type = struct.unpack("<IHB", data[position : position + 7])
        position += 7
        if chunk_type == 0:
            position += left_in_block - 7
            continue
        chunks += data[position : position + length]
        position += length
        if chunk_type in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def offline_run_dir(run_dir: Path) -> Path:
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def history_keys(records: list[wandb_internal_pb2.Record]) -> set[str]:
    keys = set()
    for record in records:
        if record.WhichOneof("record_type") == "history":
            keys.update(item.key or "/".join(item.nested_key) for item in record.history.item)
    return keys


@pytest.fixture(scope="module")
def tracked_distill(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, float]:
    workdir = tmp_path_factory.mktemp("tracked")
    run_dir = workdir / "run"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "rl_advkd", *TINY_DISTILL, "--run-dir", str(run_dir), "--track"],
        cwd=workdir,
        env=_unconfigured_env(workdir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return run_dir, result, time.monotonic() - started


def test_distill_track_logs_offline(tracked_distill):
    run_dir, result, _ = tracked_distill
    assert result.returncode == 0, result.stderr
    assert "W&B runs offline" in result.stderr
    assert f"wandb sync {offline_run_dir(run_dir)}" in result.stderr


def test_distill_track_history_has_metrics(tracked_distill):
    run_dir, _, _ = tracked_distill
    records = read_wandb_records(next(offline_run_dir(run_dir).glob("run-*.wandb")))
    keys = history_keys(records)
    for key in (
        "global_step",
        "train/kl_teacher",
        "train/kl_teacher_adv",
        "train/value_loss",
        "rollout/ep_rew_mean",
        "time/fps",
        "eval/student/natural/mean_return",
        "eval/teacher/worst/mean_return",
    ):
        assert key in keys, key


def test_distill_track_run_group_and_config(tracked_distill):
    run_dir, _, _ = tracked_distill
    records = read_wandb_records(next(offline_run_dir(run_dir).glob("run-*.wandb")))
    runs = [record.run for record in records if record.WhichOneof("record_type") == "run"]
    assert runs[0].run_group == f"{PENDULUM}/advkd"
    assert runs[0].display_name == "advkd-seed0"
    assert runs[0].job_type == "distill"
    config_keys = {item.key for item in runs[0].config.update}
    assert {"env_id", "teacher", "distill", "versions", "command"} <= config_keys


def test_distill_track_logs_media_and_artifact(tracked_distill):
    run_dir, _, _ = tracked_distill
    media = offline_run_dir(run_dir) / "files" / "media"
    assert len(list((media / "videos").rglob("*.mp4"))) == 2
    assert len(list((media / "images").rglob("*.png"))) == 1
    assert len(list((media / "table").rglob("*.table.json"))) == 1

    records = read_wandb_records(next(offline_run_dir(run_dir).glob("run-*.wandb")))
    artifacts = {
        record.artifact.name: {entry.path for entry in record.artifact.manifest.contents}
        for record in records
        if record.WhichOneof("record_type") == "artifact"
    }
    assert {"student.zip", "student.onnx", "config.yaml", "results.json"} <= artifacts[f"student-{PENDULUM}"]


def test_distill_track_fills_run_folder(tracked_distill):
    run_dir, _, _ = tracked_distill
    for name in ("student.zip", "student.onnx", "results.json", "results.md", "results.png", "config.yaml"):
        assert (run_dir / name).is_file(), name
    videos = sorted(path.name for path in (run_dir / "videos").glob("*.mp4"))
    assert videos[0] == "student-mad.mp4" or videos[0] == "student-random.mp4"
    assert videos[1] == "student-natural.mp4"
    assert any(path.name.startswith("events.out.tfevents") for path in (run_dir / "logs").iterdir())


def test_failing_wandb_log_keeps_run(tmp_path, monkeypatch, caplog, unconfigured_wandb):
    def failing_log(self, *args, **kwargs):
        raise RuntimeError("simulated W&B failure")

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", failing_log)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        status = main([*TINY_DISTILL, "--run-dir", str(run_dir), "--track"])

    assert status == 0
    for name in ("student.zip", "results.json", "results.md", "results.png", "config.yaml"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "logs" / "progress.csv").is_file()
    assert len(list((run_dir / "videos").glob("*.mp4"))) == 2
    failures = [record for record in caplog.records if "W&B log failed" in record.getMessage()]
    assert len(failures) == 1
    assert "simulated W&B failure" in failures[0].getMessage()


def test_unconfigured_wandb_starts_offline_fast(tmp_path, unconfigured_wandb):
    assert choose_mode()[0] == "offline"

    started = time.monotonic()
    tracker = Tracker.start(TrackingOptions(track=True), tmp_path / "run", {"seed": 0}, "distill", "group", "name")
    seconds = time.monotonic() - started
    try:
        assert tracker.active
        assert tracker.run.offline
        assert seconds < 30, f"offline wandb.init took {seconds:.1f} s"
    finally:
        tracker.finish()


def test_choose_mode_honours_configuration(tmp_path, monkeypatch, unconfigured_wandb):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai login user password not-a-real-key\n")
    assert choose_mode()[0] == "online"

    netrc_file.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "not-a-real-key")
    assert choose_mode()[0] == "online"

    monkeypatch.setenv("WANDB_MODE", "offline")
    assert choose_mode()[0] == "offline"

    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = Tracker.start(TrackingOptions(track=True), tmp_path / "run", {}, "distill", "group", "name")
    assert not tracker.active


def test_wandb_writer_keeps_numbers_only():
    class Recorder(Tracker):
        def log_metrics(self, metrics, step):
            self.logged = (metrics, step)

    tracker = Recorder()
    WandbWriter(tracker).write(
        {"train/loss": 0.5, "time/iterations": 3, "info/text": "abc", "train/hidden": 1.0},
        {"train/loss": None, "time/iterations": None, "info/text": None, "train/hidden": ("wandb",)},
        step=256,
    )
    assert tracker.logged == ({"train/loss": 0.5, "time/iterations": 3}, 256)


def test_user_mujoco_gl_is_kept(tmp_path, tracked_distill):
    run_dir, _, _ = tracked_distill
    # OSMesa is not usable on every machine; either way the value must stay and the run must end well.
    script = (
        "import os, sys\n"
        "from rl_advkd.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "print('MUJOCO_GL=' + os.environ['MUJOCO_GL'])\n"
        "sys.exit(status)\n"
    )
    env = {**_unconfigured_env(tmp_path), "MUJOCO_GL": "osmesa"}
    result = subprocess.run(
        [
            sys.executable, "-c", script,
            "evaluate", "--policy", str(run_dir / "student.zip"), "--env", PENDULUM,
            "--attacks", "natural,random", "--episodes", "2", "--out", str(tmp_path / "eval" / "results.json"),
            "--video", "--video-frames", "5",
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "MUJOCO_GL=osmesa" in result.stdout
    videos = list((tmp_path / "eval" / "videos").glob("*.mp4")) if (tmp_path / "eval" / "videos").is_dir() else []
    if not videos:
        assert result.stderr.count("rendering failed") == 1, result.stderr


@pytest.mark.skipif(ctypes.util.find_library("EGL") is None, reason="needs libEGL")
def test_unset_mujoco_gl_becomes_egl(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "MUJOCO_GL"}
    script = "import os\nfrom rl_advkd.rendering import choose_gl_backend\nchoose_gl_backend()\nprint(os.environ['MUJOCO_GL'])"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "egl"


def test_wandb_dir_variable_is_honoured(tmp_path, monkeypatch, unconfigured_wandb):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    (tmp_path / "wandb_dir").mkdir()
    tracker = Tracker.start(TrackingOptions(track=True), tmp_path / "run", {}, "distill", "group", "name")
    try:
        assert Path(tracker.run.dir).is_relative_to(tmp_path / "wandb_dir")
        assert not (tmp_path / "run" / "wandb").exists()
    finally:
        tracker.finish()


def test_evaluate_video_without_track(tmp_path, tracked_distill):
    run_dir, _, _ = tracked_distill
    out = tmp_path / "eval" / "results.json"
    env = {**_unconfigured_env(tmp_path), "MUJOCO_GL": "egl"}
    result = subprocess.run(
        [
            sys.executable, "-m", "rl_advkd", "evaluate", "--policy", str(run_dir / "student.zip"), "--env", PENDULUM,
            "--attacks", "natural,random", "--episodes", "2", "--out", str(out), "--video", "--video-frames", "10",
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert any(path.name.startswith("events.out.tfevents") for path in (out.parent / "logs").iterdir())
    assert not (out.parent / "wandb").exists()
    if "rendering failed" not in result.stderr:
        videos = sorted(path.name for path in (out.parent / "videos").glob("*.mp4"))
        assert videos == ["student-natural.mp4", "student-random.mp4"]


def test_teacher_track_logs_model_artifact(tmp_path):
    out = tmp_path / "teacher"
    result = subprocess.run(
        [
            sys.executable, "-m", "rl_advkd", "teacher", "--env", PENDULUM, "--timesteps", "256", "--out", str(out),
            "--track", "--video-frames", "10",
        ],
        cwd=tmp_path, env=_unconfigured_env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "rl_advkd.train: steps" in result.stderr
    assert (out / "model.onnx").is_file()

    records = read_wandb_records(next(offline_run_dir(out).glob("run-*.wandb")))
    runs = [record.run for record in records if record.WhichOneof("record_type") == "run"]
    assert runs[0].run_group == f"{PENDULUM}/teacher"
    assert "eval/mean_reward" in history_keys(records) or "rollout/ep_rew_mean" in history_keys(records)
    artifacts = {
        record.artifact.name: {entry.path for entry in record.artifact.manifest.contents}
        for record in records
        if record.WhichOneof("record_type") == "artifact"
    }
    assert {"model.zip", "model.onnx", "vecnormalize.pkl", "provenance.json"} <= artifacts[f"teacher-{PENDULUM}"]


def test_episodes_log_progress_without_terminal(pendulum_teacher, monkeypatch, caplog):
    from rl_advkd import evaluation

    monkeypatch.setattr(evaluation, "PROGRESS_LOG_S", 0.0)
    with caplog.at_level(logging.INFO, logger="rl_advkd.evaluation"):
        evaluation.run_episodes(pendulum_teacher, PENDULUM, "natural", 0.0, episodes=2, n_envs=1, show_progress=False)
    lines = [record.getMessage() for record in caplog.records if "episodes," in record.getMessage()]
    assert lines[0].startswith("teacher/natural: 1/2 episodes")
    assert lines[-1].startswith("teacher/natural: 2/2 episodes")
