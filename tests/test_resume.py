"""Checkpoints, Ctrl-C and --resume, and identical students from identical seeds."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch as th

from rl_advkd.cli import main
from conftest import PENDULUM

# Sixteen rollouts of 256 steps; a checkpoint after every rollout.
ARGS = [
    "--env", PENDULUM, "--total-timesteps", "4096", "--n-envs", "2", "--n-steps", "128", "--batch-size", "128",
    "--n-epochs", "2", "--net-arch", "8,8", "--pgd-steps", "2", "--eval-episodes", "1", "--eval-attacks", "natural",
    "--preflight-episodes", "0", "--checkpoint-every", "256", "--seed", "3",
]  # fmt: skip


def _weights(student_zip: Path) -> dict[str, th.Tensor]:
    with zipfile.ZipFile(student_zip) as archive, archive.open("policy.pth") as file:
        return th.load(file, weights_only=True)


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    assert main(["distill", "--run-dir", str(run_dir), *ARGS]) == 0
    return run_dir


def test_same_seed_gives_identical_student(uninterrupted, tmp_path):
    run_dir = tmp_path / "again"
    assert main(["distill", "--run-dir", str(run_dir), *ARGS]) == 0

    first, second = _weights(uninterrupted / "student.zip"), _weights(run_dir / "student.zip")
    assert first.keys() == second.keys()
    for name in first:
        assert th.equal(first[name], second[name]), name


def test_interrupted_run_resumes_full_budget(uninterrupted, tmp_path):
    run_dir = tmp_path / "interrupted"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rl_advkd", "distill", "--run-dir", str(run_dir), *ARGS],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and the child would inherit that;
        # the default disposition lets Python turn the signal into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Wait for the checkpoint after the fourth rollout, then press Ctrl-C.
    state_file = run_dir / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if state_file.is_file() and json.loads(state_file.read_text())["num_timesteps"] >= 1024:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert f"rl-advkd distill --resume {run_dir}" in stderr
    assert "Traceback" not in stderr
    stopped_at = json.loads(state_file.read_text())["num_timesteps"]
    assert 1024 <= stopped_at < 4096
    assert stopped_at % 256 == 0
    assert not (run_dir / "results.json").exists()

    assert main(["distill", "--resume", str(run_dir)]) == 0
    resumed = _results(run_dir)
    assert resumed["total_timesteps"] == _results(uninterrupted)["total_timesteps"] == 4096
    assert resumed["resumed_at"] == stopped_at


def test_resume_without_checkpoint_errors(tmp_path, capsys):
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    assert main(["distill", "--resume", str(run_dir)]) == 2
    message = capsys.readouterr().err
    assert "no config.yaml" in message
    assert str(run_dir) in message


def test_resume_after_training_reruns_evaluation(uninterrupted, tmp_path):
    # A run stopped during its final evaluation has a checkpoint at the full budget.
    import shutil

    run_dir = tmp_path / "finished"
    shutil.copytree(uninterrupted, run_dir)
    (run_dir / "results.json").unlink()

    assert main(["distill", "--resume", str(run_dir)]) == 0
    results = _results(run_dir)
    assert results["total_timesteps"] == 4096
    assert results["resumed_at"] == 4096
