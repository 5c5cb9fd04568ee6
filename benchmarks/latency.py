"""
Per-action latency and throughput of an exported student, an exported teacher and SB3's predict.

Three paths compute the same kind of deterministic, clipped action from a raw observation:

* ``student_onnx``: the student exported to ONNX, run by :class:`rl_advkd.deploy.OnnxPolicy`;
* ``teacher_onnx``: the teacher exported the same way;
* ``teacher_sb3``: ``model.predict(vec_normalize.normalize_obs(obs), deterministic=True)``,
  the usual SB3 path with the teacher's frozen ``VecNormalize`` statistics.

The process is pinned to one CPU core, torch uses one thread and onnxruntime one intra-op
thread (``--cpu`` picks the core). Batch size 1 gives the latency of one control step; batch size 1,024 gives the
throughput. Each number is the median over ``--repeats`` timed runs of about ``--seconds``.

Without ``--student``, the student is a freshly initialized [64, 64] AdvKD student: its weights
are untrained, which changes no timing because the graph is the same. Run from the repository
root::

    OMP_NUM_THREADS=1 python benchmarks/latency.py --out benchmarks/latency.json
"""

import os
import sys

# Set before torch is imported, which reads them once.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch as th  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402

from rl_advkd.deploy import OnnxPolicy  # noqa: E402
from rl_advkd.distill import build_student  # noqa: E402
from rl_advkd.export import ONNX_OPSET, export_policy  # noqa: E402
from rl_advkd.paths import SOURCE_ROOT  # noqa: E402
from rl_advkd.profiles import DistillConfig, load_profile  # noqa: E402
from rl_advkd.provenance import command_line, utc_now  # noqa: E402
from rl_advkd.teacher_loading import algorithm_class, load_teacher, resolve_teacher  # noqa: E402

LARGE_BATCH = 1024
TARGET_SPEEDUP = 30.0
TARGET_ACTIONS_PER_SECOND = 1_000_000
STUDENT_NET_ARCH = [64, 64]


def default_env_id() -> str:
    """Hopper-v5 once its teacher is shipped, else InvertedPendulum-v5."""
    if (SOURCE_ROOT / "agents" / "Hopper-v5" / "teacher" / "model.zip").is_file():
        return "Hopper-v5"
    return "InvertedPendulum-v5"


def time_calls(call: Callable[[np.ndarray], Any], inputs: list[np.ndarray], seconds: float, repeats: int) -> list[float]:
    """
    Time ``call`` on the inputs in turn; return the seconds per call of each repeat.

    A short warm-up sizes each repeat to take about ``seconds``.
    """
    warmup_calls = 0
    started = time.perf_counter()
    while time.perf_counter() - started < min(0.2, seconds) or warmup_calls < 20:
        call(inputs[warmup_calls % len(inputs)])
        warmup_calls += 1
    calls = max(10, int(warmup_calls * seconds / (time.perf_counter() - started)))

    per_call = []
    for _ in range(repeats):
        started = time.perf_counter()
        for index in range(calls):
            call(inputs[index % len(inputs)])
        per_call.append((time.perf_counter() - started) / calls)
    return per_call


def measure(call: Callable[[np.ndarray], Any], single: list[np.ndarray], batches: list[np.ndarray], args) -> dict:
    """Latency at batch size 1 and throughput at batch size 1,024, as medians over the repeats."""
    latency = time_calls(call, single, args.seconds, args.repeats)
    batch_seconds = time_calls(call, batches, args.seconds, args.repeats)
    throughput = [LARGE_BATCH / seconds for seconds in batch_seconds]
    return {
        "batch1_us_per_action_median": statistics.median(latency) * 1e6,
        "batch1_us_per_action_repeats": [round(value * 1e6, 3) for value in latency],
        f"batch{LARGE_BATCH}_actions_per_s_median": statistics.median(throughput),
        f"batch{LARGE_BATCH}_actions_per_s_repeats": [round(value) for value in throughput],
    }


def session_run(session: ort.InferenceSession) -> Callable[[np.ndarray], np.ndarray]:
    """Return a bare ``session.run`` on a float32 batch, without the checks of :class:`OnnxPolicy`."""
    input_name = session.get_inputs()[0].name

    def run(obs: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: obs})[0]

    return run


def empty_graph_session(obs_dim: int) -> ort.InferenceSession:
    """Build a session on an ONNX graph of one Identity node, to time the fixed cost of ``session.run``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["obs"], ["action"])],
        "empty",
        inputs=[helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", obs_dim])],
        outputs=[helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", obs_dim])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def sb3_predict(teacher_path: Path, env_id: str, algo: str) -> Callable[[np.ndarray], np.ndarray]:
    """Return SB3's usual inference path: frozen VecNormalize, then ``model.predict``."""
    source = resolve_teacher(teacher_path, env_id)
    model = algorithm_class(algo).load(source.model, device="cpu")
    vec_normalize = VecNormalize.load(str(source.vecnormalize), DummyVecEnv([lambda: gym.make(env_id)]))
    vec_normalize.training = False

    def predict(obs: np.ndarray) -> np.ndarray:
        return model.predict(vec_normalize.normalize_obs(obs), deterministic=True)[0]

    return predict


def student_onnx(args, teacher, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """Export ``--student`` (a zip) or a freshly initialized [64, 64] student to ONNX."""
    if args.student is not None and Path(args.student).suffix == ".onnx":
        return Path(args.student), {"path": args.student, "trained": None}
    if args.student is not None:
        out, _ = export_policy(args.student, "onnx", workdir / "student.onnx", args.env)
        return out, {"path": args.student, "trained": None}

    config = DistillConfig(n_envs=1, n_steps=64, batch_size=64, net_arch=STUDENT_NET_ARCH)
    student = build_student(config, teacher, args.env, epsilon=load_profile(args.env).epsilon)
    student.save(workdir / "student.zip")
    out, _ = export_policy(workdir / "student.zip", "onnx", workdir / "student.onnx", args.env)
    return out, {
        "path": None,
        "trained": False,
        "net_arch": STUDENT_NET_ARCH,
        "note": "freshly initialized weights: the timing depends on the graph, not on the weight values",
    }


def pin_to_cpu(cpu: int | None) -> int | None:
    """
    Pin this process to one CPU core (Linux only); return the core, or ``None`` where pinning is unsupported.

    Pinning after the imports is enough: with one torch thread and one onnxruntime intra-op
    thread, all timed work runs on the main thread, which this call moves.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if cpu is None else cpu
    if cpu not in allowed:
        raise SystemExit(f"--cpu {cpu} is not available to this process; choose from {allowed}")
    os.sched_setaffinity(0, {cpu})
    return cpu


def machine_record(cpu: int | None) -> dict[str, Any]:
    model_name = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model_name = names[0] if names else model_name
    versions = {}
    for name in ("onnxruntime", "torch", "stable-baselines3", "numpy", "rl_advkd"):
        versions[name] = metadata.version(name)
    return {
        "cpu": model_name,
        "logical_cpus": os.cpu_count(),
        "pinned_cpu": cpu,
        "torch_threads": th.get_num_threads(),
        "onnxruntime_intra_op_threads": 1,
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=default_env_id(), help="Gymnasium env id (default: %(default)s)")
    parser.add_argument("--teacher", help="teacher folder (default: agents/<ENV>/teacher)")
    parser.add_argument("--student", help="student .zip or exported .onnx (default: a fresh [64, 64] student)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per number (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=0.3, help="length of one timed run (default: %(default)s)")
    parser.add_argument("--cpu", type=int, help="CPU core to pin to (default: the last one available)")
    parser.add_argument("--out", default="benchmarks/latency.json", help="results JSON (default: %(default)s)")
    args = parser.parse_args(argv)

    cpu = pin_to_cpu(args.cpu)
    th.set_num_threads(1)
    teacher_path = Path(args.teacher) if args.teacher else SOURCE_ROOT / "agents" / args.env / "teacher"
    teacher = load_teacher(teacher_path, args.env)
    machine = machine_record(cpu)

    # Distinct observations, distributed like the teacher's training data, so no path is timed on one input.
    rng = np.random.default_rng(0)
    mean, std = teacher.normalizer.mean, np.sqrt(teacher.normalizer.var)
    single = [mean + std * rng.normal(size=mean.shape) for _ in range(256)]
    batches = [mean + std * rng.normal(size=(LARGE_BATCH, *mean.shape)) for _ in range(4)]

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        student_path, student_info = student_onnx(args, teacher, workdir)
        teacher_onnx_path, _ = export_policy(teacher_path, "onnx", workdir / "teacher.onnx", args.env)
        student = OnnxPolicy(student_path)
        teacher_onnx = OnnxPolicy(teacher_onnx_path)
        predict = sb3_predict(teacher_path, args.env, teacher.info["algo"])

        # The exported teacher and SB3's predict must compute the same actions, or the comparison is void.
        max_difference = float(np.abs(teacher_onnx.predict(batches[0]) - predict(batches[0])).max())

        results = {
            "student_onnx": measure(student.predict, single, batches, args),
            "teacher_onnx": measure(teacher_onnx.predict, single, batches, args),
            "teacher_sb3": measure(predict, single, batches, args),
        }
        # Where the batch-1 time goes: the bare session.run on the student's graph, and on a graph
        # that does no work, with float32 input that needs no cast.
        single32 = [obs.astype(np.float32)[np.newaxis] for obs in single]
        batches32 = [batch.astype(np.float32) for batch in batches]
        overhead = {
            "student_onnx_bare_session_run": measure(session_run(student.session), single32, batches32, args),
            "empty_graph_bare_session_run": measure(
                session_run(empty_graph_session(mean.size)), single32, batches32, args
            ),
        }
        student_info["actor_parameters"] = student.metadata["actor_parameters"]

    sb3_latency = results["teacher_sb3"]["batch1_us_per_action_median"]
    student_latency = results["student_onnx"]["batch1_us_per_action_median"]
    student_throughput = results["student_onnx"][f"batch{LARGE_BATCH}_actions_per_s_median"]
    ratios = {
        "batch1_sb3_predict_over_student_onnx": sb3_latency / student_latency,
        "batch1_sb3_predict_over_teacher_onnx": sb3_latency / results["teacher_onnx"]["batch1_us_per_action_median"],
        f"batch{LARGE_BATCH}_student_onnx_over_sb3_predict": student_throughput
        / results["teacher_sb3"][f"batch{LARGE_BATCH}_actions_per_s_median"],
    }
    record = {
        "script": "benchmarks/latency.py",
        "command": command_line(),
        "created": utc_now(),
        "env_id": args.env,
        "repeats": args.repeats,
        "seconds_per_repeat": args.seconds,
        "machine": machine,
        "load_average_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "student": student_info,
        "teacher": {"path": str(teacher_path), "actor_parameters": teacher.actor_parameter_count()},
        "teacher_onnx_vs_sb3_max_abs_action_difference": max_difference,
        "results": results,
        "overhead": overhead,
        "ratios": ratios,
        "targets": {
            f"student_at_least_{TARGET_SPEEDUP:g}x_faster_than_sb3_predict_at_batch1": ratios[
                "batch1_sb3_predict_over_student_onnx"
            ]
            >= TARGET_SPEEDUP,
            f"student_over_{TARGET_ACTIONS_PER_SECOND:,}_actions_per_s_at_batch{LARGE_BATCH}": student_throughput
            > TARGET_ACTIONS_PER_SECOND,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")

    print(f"{args.env} on one core of {machine['cpu']} (load average {machine['load_average_1min_at_start']:.2f})")
    print(f"{'path':<14}{'µs/action @1':>14}{f'actions/s @{LARGE_BATCH}':>20}")
    for name, row in results.items():
        print(f"{name:<14}{row['batch1_us_per_action_median']:>14.1f}{row[f'batch{LARGE_BATCH}_actions_per_s_median']:>20,.0f}")
    for name, row in overhead.items():
        print(f"{name}: {row['batch1_us_per_action_median']:.1f} µs per call at batch size 1")
    for name, value in ratios.items():
        print(f"{name}: {value:.1f}x")
    for name, met in record["targets"].items():
        print(f"{name}: {'met' if met else 'NOT met'}")
    if student_info.get("trained") is False:
        print(f"student: freshly initialized {STUDENT_NET_ARCH} weights (untrained; timing only)")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
