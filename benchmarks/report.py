"""
Write BENCHMARKS.md, and the measured table of README.md, from the raw benchmark outputs.

Nothing here measures anything: every number comes from a file that a benchmark script in this
folder wrote (``results/main_job/``, ``results/*_probe/``, ``results/force_adversary/``,
``latency.json``). A missing output leaves its section saying which script to run.

Usage: ``python benchmarks/report.py``
"""

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README_MARKERS = ("<!-- main-job:start -->", "<!-- main-job:end -->")


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _cell(row: dict) -> str:
    return f"{row['mean']:.0f} ± {row['std']:.0f} ({row['falls']}/{row['episodes']})"


def main_job_section() -> str:
    """Render the main job's teacher-vs-student table with its wall time and sizes."""
    record = _load(RESULTS / "main_job" / "results.json")
    timing = _load(RESULTS / "main_job" / "timing.json")
    if record is None or timing is None:
        return "Not measured yet: run `python benchmarks/main_job.py`.\n"

    teacher, student = record["policies"]
    lines = ["| attack | ε | teacher (actor [256, 256]) | student (actor [64, 64]) |", "|---|---|---|---|"]
    for teacher_row, student_row in zip(teacher["rows"], student["rows"]):
        attack = "**worst**" if teacher_row["attack"] == "worst" else teacher_row["attack"]
        lines.append(f"| {attack} | {teacher_row['epsilon']:g} | {_cell(teacher_row)} | {_cell(student_row)} |")

    natural = {policy["name"]: policy["rows"][0]["mean"] for policy in record["policies"]}
    ratio = teacher["actor_parameters"] / student["actor_parameters"]
    return "\n".join(lines) + (
        f"\n\nCells: mean ± std of the return over {record['episodes']} deterministic episodes "
        f"(falls: episodes that ended before the time limit). {record['env_id']}, ε = {record['epsilon']} in normalized "
        f"units, seed {record['seed']}. Student natural return: {100 * natural['student'] / natural['teacher']:.0f}% "
        f"of the teacher's. Actor parameters: teacher {teacher['actor_parameters']:,}, student "
        f"{student['actor_parameters']:,} ({ratio:.1f} times fewer). Training: {record['total_timesteps']:,} steps "
        f"in {record['train_seconds'] / 60:.1f} min; the whole command took {timing['wall_seconds'] / 60:.1f} min "
        f"on {timing['cpu_count']} cores ({timing['processor'] or timing['machine']}). "
        f"Command: `{timing['command']}`; raw output in `benchmarks/results/main_job/`.\n"
    )


def probe_section(probe: str) -> str:
    """Render one probe of ``probe.py``: the settings and returns of its two students, and the teacher's."""
    folder = RESULTS / probe
    labels = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    if not labels:
        return f"Not measured yet: run `python benchmarks/probe.py {probe}`.\n"

    lines = [
        "| run | steps | λ | learning rate | natural | share of the teacher's natural | random | mad |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        record = _load(folder / label / "results.json")
        config = yaml.safe_load((folder / label / "config.yaml").read_text())["distill"]
        student = {row["attack"]: row for row in record["policies"][1]["rows"]}
        teacher = {row["attack"]: row for row in record["policies"][0]["rows"]}
        schedule = config.get("learning_rate_schedule", "constant")
        share = 100 * student["natural"]["mean"] / teacher["natural"]["mean"]
        lines.append(
            f"| {label} | {record['total_timesteps']:,} | {config['lambda_adv']} | {config['learning_rate']:g}, "
            f"{schedule} | {_cell(student['natural'])} | {share:.0f}% | {_cell(student['random'])} | "
            f"{_cell(student['mad'])} |"
        )
    lines.append(
        f"| teacher | | | | {_cell(teacher['natural'])} | | {_cell(teacher['random'])} | {_cell(teacher['mad'])} |"
    )
    return "\n".join(lines) + (
        f"\n\n{record['env_id']}, seed {record['seed']}, {record['episodes']} deterministic episodes per cell, "
        "the two runs in parallel on one thread each. Each share compares with the teacher evaluated in the same "
        "run; the teacher row is from the last run. One seed per setting: a probe picks a default, "
        f"it is not a significance test. Script: `benchmarks/probe.py {probe}`; raw output in "
        f"`benchmarks/results/{probe}/`.\n"
    )


def force_section() -> str:
    """Return the force-adversary comparison that ``force_adversary.py`` wrote."""
    summary = RESULTS / "force_adversary" / "summary.md"
    if not summary.is_file():
        return "Not measured yet: run `python benchmarks/force_adversary.py`.\n"
    return summary.read_text() + (
        "\nThe training wall times include a pause of about 7 minutes, during which the main job ran alone on "
        "the machine. Script: `benchmarks/force_adversary.py`; raw output in `benchmarks/results/force_adversary/`.\n"
    )


def latency_section() -> str:
    """Render per-action latency and throughput of the exported student, the exported teacher and SB3."""
    record = _load(ROOT / "benchmarks" / "latency.json")
    if record is None:
        return "Not measured yet: run `python benchmarks/latency.py`.\n"
    results = record["results"]
    names = {"student_onnx": "student, ONNX Runtime", "teacher_onnx": "teacher, ONNX Runtime",
             "teacher_sb3": "teacher, SB3 `predict` with VecNormalize"}  # fmt: skip
    lines = ["| policy | µs per action, batch 1 | actions/s, batch 1,024 |", "|---|---|---|"]
    for key, label in names.items():
        row = results[key]
        lines.append(
            f"| {label} | {row['batch1_us_per_action_median']:.1f} | {row['batch1024_actions_per_s_median']:,.0f} |"
        )
    ratios = record["ratios"]
    overhead = record["overhead"]["empty_graph_bare_session_run"]["batch1_us_per_action_median"]
    # latency.py records trained=False for a freshly built student and the path of a given one.
    student = record["student"]
    student_note = f"student {student['path']}" if student.get("path") else "a freshly initialized [64, 64] student"
    return "\n".join(lines) + (
        f"\n\nMedians of {record['repeats']} repeats, one thread, {record['env_id']} ({student_note}). "
        f"Per action at batch 1 the exported student is {ratios['batch1_sb3_predict_over_student_onnx']:.1f} times "
        f"faster than SB3's `predict` on the teacher, short of the 30 times we aim for: ONNX Runtime's Python call "
        f"alone took {overhead:.1f} µs on an empty graph on this machine. At batch 1,024 it runs "
        f"{ratios['batch1024_student_onnx_over_sb3_predict']:.1f} times the SB3 throughput. "
        "Script: `benchmarks/latency.py`; raw output in `benchmarks/latency.json`.\n"
    )


def write_benchmarks() -> str:
    """Assemble BENCHMARKS.md and return the main-job table for the README."""
    main_job = main_job_section()
    page = f"""# Benchmarks

Every number on this page is read from a raw output committed under `benchmarks/` by
`benchmarks/report.py`; the script that produced each output is named under its table. All runs
are on a 2-core x86_64 machine without a GPU, often shared with other jobs, so absolute times are
estimates and ratios measured side by side in one run are the figures to compare.

## Main job: Hopper-v5 teacher and AdvKD student

`rl-advkd distill` with its defaults: observation attacks at the profile's ε.

{main_job}
## Choosing the defaults: λ and the learning-rate schedule

λ weighs the PPO term against distillation. Each probe trained two students side by side.

{probe_section("lambda_probe")}
{probe_section("schedule_probe")}
## Force adversary: students distilled without and with it

Same seed and budget; the second student trained in alternation with a PPO force adversary
(pushes on the torso, in x and z, up to the profile's bound). Rows `force-random` (random pushes
at the bound), `force` (a fresh adversary trained against the evaluated student), and the mass
and friction grids (factors on every body mass and every geom friction, from nominal values).

{force_section()}
With the force adversary at the profile's 20 N bound, the student gave up the teacher's gait: its
natural return fell to the level of a robot that stays upright for a while and falls, and it was
no better under pushes. A fresh 20 N adversary brings both students below 150 (the `force` row),
so this bound is too strong to train against; the force adversary is therefore off by default. Both students lose most of their return when
every friction coefficient changes by 25% or more, when every mass grows by 25% or more, or when
every mass halves. The student trained without the adversary did better with masses at 75%.

## Deployment latency

{latency_section()}
## Force bounds

How the force bound of each task profile was chosen: `benchmarks/force_bounds.py`, raw outputs in
`benchmarks/force_bounds-Hopper-v5.txt` and `benchmarks/force_bounds-InvertedPendulum-v5.txt`.
"""
    (ROOT / "BENCHMARKS.md").write_text(page)
    return main_job


def update_readme(main_job: str) -> None:
    """Replace the text between the README's main-job markers with the measured table."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no {start} ... {end} markers")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    readme.write_text(f"{before}{start}\n{main_job}{end}{after}")


if __name__ == "__main__":
    update_readme(write_benchmarks())
