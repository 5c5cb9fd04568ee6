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


def optimal_budget_section() -> str:
    """Return the table of ``optimal`` returns per attacker budget that ``optimal_budget.py`` wrote."""
    summary = RESULTS / "optimal_budget" / "summary.md"
    if not summary.is_file():
        return "Not measured yet: run `python benchmarks/optimal_budget.py`.\n"
    return summary.read_text() + "Raw output in `benchmarks/results/optimal_budget/`.\n"


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


def _relative(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _interval(cell: dict) -> str:
    text = f"{cell['iqm']:.0f} [{cell['low']:.0f}, {cell['high']:.0f}]"
    if "falls" in cell:
        text += f" ({cell['falls']}/{cell['episodes']})"
    return text


def robustness_section(folder: Path) -> str:
    """Render the per-task tables of ``robustness.py``: IQM over seeds with 95% bootstrap intervals."""
    summary = _load(folder / "summary.json")
    if summary is None:
        return "Not measured yet: run `python benchmarks/robustness.py`.\n"

    parts = []
    for task, record in summary["tasks"].items():
        policies = record["policies"]
        names = list(policies)
        header = "| attack | ε | " + " | ".join(names) + " |"
        lines = [header, "|---|---|" + "---|" * len(names)]
        for key, cell in policies[names[0]]["cells"].items():
            label = f"**{cell['attack']}**" if cell["attack"] == "worst" else cell["attack"]
            cells = [_interval(policies[name]["cells"][key]) if key in policies[name]["cells"] else "" for name in names]
            lines.append(f"| {label} | {cell['epsilon']:g} | " + " | ".join(cells) + " |")
        sizes = ", ".join(f"{name} {policies[name]['actor_parameters']:,}" for name in names)
        parts.append(
            f"### {task}\n\n" + "\n".join(lines) + f"\n\n{record['seeds']} seeds per policy, {record['timesteps']:,} "
            f"student steps, {summary['episodes']} deterministic episodes per seed and row. Cells: interquartile mean "
            f"over seeds of the per-seed mean return, with its 95% stratified bootstrap interval (rliable), and the "
            f"falls over all seeds' episodes (episodes that ended before the time limit). The "
            f"teacher is one model, evaluated on each seed's episode seeds. Actor parameters: {sizes}.\n"
        )
    optimal = summary.get("optimal")
    if optimal:
        at = ", ".join(f"{task} {epsilon:g}" for task, epsilon in optimal["epsilon"].items())
        parts.append(
            f"`optimal` ran at one ε per task, the one the published tables use ({at}): three PPO attackers "
            f"of {optimal['steps_per_attacker']:,} steps each per policy and seed, the one with the lowest return on "
            "10 separate episodes evaluated on the table's episodes. Published learned attackers train for millions "
            "of steps, so this row is a weaker attacker than theirs.\n"
        )
    curves = folder / "robustness-curves.png"
    if curves.is_file():
        parts.append(f"![worst-case return against ε per task and policy]({_relative(curves)})\n")
    if summary["budget"] != "full":
        parts.append(
            f"These tables come from the `{summary['budget']}` budget of `robustness.py`, smaller than the full one "
            "(Hopper-v5, Walker2d-v5 and HalfCheetah-v5, the `optimal` attack, the force-adversary ablation, "
            "50 episodes).\n"
        )
    parts.append(published_section(summary))
    parts.append(cost_section(summary))
    wall = summary["wall_seconds"]["total"]
    wall_text = f"{wall / 3600:.1f} h" if wall >= 3600 else f"{wall / 60:.0f} min"
    invocations = summary["wall_seconds"].get("invocations", 1)
    # Every policy but the shipped teacher trained once per seed.
    trained = sum(record["seeds"] * (len(record["policies"]) - 1) for record in summary["tasks"].values())
    untimed = trained - len(summary["wall_seconds"]["train"])
    reused = (
        f" It excludes {untimed} training runs that were already done when the recorded invocations started "
        "(trained with the same command by another budget and copied, or by an invocation that stopped "
        "before writing its summary)."
        if untimed > 0
        else ""
    )
    parts.append(
        f"Budget `{summary['budget']}`, wall time {wall_text} on 2 cores "
        f"(over {invocations} invocation{'s' if invocations > 1 else ''} of the script).{reused} "
        f"Script: `benchmarks/robustness.py`; raw output in `{_relative(folder)}`.\n"
    )
    return "\n".join(parts)


def published_section(summary: dict) -> str:
    """Set our worst-case / natural ratios beside the published ones at the same ε."""
    published = _load(ROOT / "benchmarks" / "published.json")
    lines = [
        "### Worst case over natural, beside published robust agents",
        "",
        "| task | ε | ours: teacher | ours: advkd | " + " | ".join(published["sources"]) + " |",
        "|---|---|---|---|" + "---|" * len(published["sources"]),
    ]
    for task, record in summary["tasks"].items():
        family = task.split("-")[0]
        if family not in published["results"]:
            continue
        epsilon = published["epsilon"][family]
        ratios = []
        for name in ("teacher", "advkd"):
            cells = record["policies"][name]["cells"]
            worst, natural = cells.get(f"worst@{epsilon:g}"), next(
                (cell for cell in cells.values() if cell["attack"] == "natural"), None
            )
            ratios.append(f"{worst['iqm'] / natural['iqm']:.2f}" if worst and natural else "not run")
        theirs = [f"{w / n:.2f} ({w}/{n})" for w, n in published["results"][family].values()]
        lines.append(f"| {task} | {epsilon:g} | " + " | ".join(ratios + theirs) + " |")
    lines.append(
        "\nOurs: IQM of the worst case over IQM of the natural return, v5 tasks, the attacks of "
        f"`{summary['attacks']}` and the dynamics rows that ran. Published: the papers' own worst case "
        "over their attacks on the v2 tasks (Gym with mujoco-py), other seeds and training budgets; "
        "sources and the exact figures in `benchmarks/published.json`. The task versions differ in "
        "their physics and observations, so the ratios compare, the returns do not. A ratio near 1 can also "
        "come from a low natural return, so read it together with the absolute rows above.\n"
    )
    return "\n".join(lines)


def cost_section(summary: dict) -> str:
    """Render the cost figures measured on the first task."""
    cost = summary.get("cost")
    if cost is None:
        return ""
    steps = cost["steps_to_90_percent"]

    def reached(values: list) -> str:
        return ", ".join(f"{value:,}" if value is not None else f"not within {cost['budget_steps']:,}" for value in values)

    throughput = cost["throughput"]
    ratio = throughput["advkd_steps_per_s"] / throughput["ppo_steps_per_s"]
    return (
        f"### Cost on {cost['task']}\n\n"
        f"| figure | value |\n|---|---|\n"
        f"| steps to 90% of the teacher's natural return ({cost['teacher_natural']:.0f}), per seed: PPO from scratch | {reached(steps['ppo-scratch'])} |\n"
        f"| same, distilled student (KL only) | {reached(steps['kl-only'])} |\n"
        f"| same, AdvKD student | {reached(steps['advkd'])} |\n"
        f"| AdvKD training speed | {throughput['advkd_steps_per_s']:.0f} steps/s |\n"
        f"| plain SB3 PPO, same student and task | {throughput['ppo_steps_per_s']:.0f} steps/s |\n"
        f"| AdvKD / PPO speed | {ratio:.2f} |\n\n"
        "Steps to 90%: the first logged iteration whose mean training-episode return (stochastic actions, and "
        "for AdvKD partly attacked observations) reaches 90% of the teacher's deterministic natural return. "
        f"Speed: {throughput['steps']:,} steps of each, alternated twice in one process on one thread, the faster "
        "repeat of each.\n"
    )


def write_benchmarks(page: Path = ROOT / "BENCHMARKS.md", robustness_dir: Path | None = None) -> str:
    """
    Assemble BENCHMARKS.md (or ``page``) and return its text.

    :param robustness_dir: raw output of ``robustness.py``; by default the full budget's, else the medium one's
    """
    if robustness_dir is None:
        full = RESULTS / "robustness"
        robustness_dir = full if (full / "summary.json").is_file() else RESULTS / "robustness-medium"
    main_job = main_job_section()
    text = f"""# Benchmarks

Every number on this page is read from a raw output committed under `benchmarks/` by
`benchmarks/report.py`; the script that produced each output is named under its table. All runs
are on a 2-core x86_64 machine without a GPU, often shared with other jobs, so absolute times are
estimates and ratios measured side by side in one run are the figures to compare.

## Robustness over seeds

Teacher, student trained from scratch with PPO, distilled student without adversaries (KL only)
and AdvKD student, at equal student size and equal environment steps, under every attack at
several ε (normalized units). `worst` is the lowest row at that ε, the ε-free dynamics rows included.
The ablations on Hopper-v5 are AdvKD without the robust KL term (`no-robust-kl`, β = 0), without
the observation attacker in its rollouts (`no-rollout-attacker`), and with the RARL force adversary
at the profile's bound (`force-adversary`; AdvKD's default trains without it).

{robustness_section(robustness_dir)}
## The learned attacker's training budget

The `optimal` rows above come from attackers trained briefly. The same attack with longer-trained
attackers, on the Hopper-v5 teacher and the first AdvKD student of the table:

{optimal_budget_section()}
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
{", ".join(f"`{path.relative_to(ROOT)}`" for path in sorted((ROOT / "benchmarks").glob("force_bounds-*.txt")))}.
Each profile quotes the rows behind its bound.
"""
    Path(page).write_text(text)
    return text


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
    write_benchmarks()
    update_readme(main_job_section())
