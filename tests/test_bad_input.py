"""Bad input gets one line naming the value and the fix, exit status 2, and no run folder."""

import pytest

from rl_advkd.cli import main
from conftest import PENDULUM, SHIPPED_PENDULUM_TEACHER


def _fail(capsys, argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def _distill(tmp_path, *extra: str) -> list[str]:
    return ["distill", "--run-dir", str(tmp_path / "run"), "--total-timesteps", "256", *extra]


def test_missing_teacher_path(capsys, tmp_path):
    message = _fail(capsys, _distill(tmp_path, "--env", PENDULUM, "--teacher", str(tmp_path / "nowhere")))
    assert "teacher not found" in message
    assert "nowhere" in message
    assert not (tmp_path / "run").exists()


def test_teacher_for_another_env(capsys, tmp_path):
    message = _fail(capsys, _distill(tmp_path, "--env", "Hopper-v5", "--teacher", str(SHIPPED_PENDULUM_TEACHER)))
    assert "(4,)" in message
    assert "(11,)" in message
    assert not (tmp_path / "run").exists()


def test_missing_normalization_statistics(capsys, tmp_path):
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    (teacher_dir / "model.zip").write_bytes((SHIPPED_PENDULUM_TEACHER / "model.zip").read_bytes())
    message = _fail(capsys, _distill(tmp_path, "--env", PENDULUM, "--teacher", str(teacher_dir)))
    assert "missing normalization statistics" in message
    assert "vecnormalize.pkl" in message


def test_unknown_env_id_suggests_close_ids(capsys, tmp_path):
    message = _fail(capsys, _distill(tmp_path, "--env", "Hoper-v5"))
    assert "unknown env id 'Hoper-v5'" in message
    assert "Hopper-v5" in message


@pytest.mark.parametrize("command", ["distill", "evaluate"])
def test_negative_epsilon(capsys, tmp_path, command):
    if command == "distill":
        argv = _distill(tmp_path, "--env", PENDULUM, "--epsilon", "-0.1")
    else:
        argv = ["evaluate", "--policy", str(SHIPPED_PENDULUM_TEACHER), "--env", PENDULUM, "--epsilon", "-0.1"]
    message = _fail(capsys, argv)
    assert "epsilon must be a finite number >= 0, got -0.1" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("net_arch", ["64,-3", "abc", "64,0", ","])
def test_invalid_student_architecture(capsys, tmp_path, net_arch):
    message = _fail(capsys, _distill(tmp_path, "--env", PENDULUM, "--net-arch", net_arch))
    assert "is not a list of positive integers" in message
    assert "--net-arch 64,64" in message
    assert not (tmp_path / "run").exists()


def test_unknown_attack(capsys, tmp_path):
    argv = ["evaluate", "--policy", str(SHIPPED_PENDULUM_TEACHER), "--env", PENDULUM, "--attacks", "natural,fgsm"]
    message = _fail(capsys, argv)
    assert "fgsm" in message
    assert "natural, random, mad" in message
