"""Figures of evaluation results, drawn with matplotlib without a display."""

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    """Return ``matplotlib.pyplot`` on the Agg backend."""
    # The Agg backend draws into memory, so no display is needed; importing pyplot after this
    # call keeps it from picking an interactive backend.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(record: dict[str, Any], path: str | Path) -> Path:
    """
    Draw a bar plot of the mean return per attack, one bar per policy, and save it as PNG.

    The error bars are one standard deviation over the episodes. The ``worst`` rows are left out
    because they repeat other rows. A record of several budgets ε adds the budget to the label of
    each observation attack.

    :param record: a results record of :func:`rl_advkd.evaluation.results_record`
    :param path: the image file to write
    :return: the written file
    """
    plt = _pyplot()
    from rl_advkd.attacks import OBSERVATION_ATTACKS
    from rl_advkd.evaluation import row_label

    policies = record["policies"]
    epsilons = record.get("epsilons", [record["epsilon"]])
    indices = [index for index, row in enumerate(policies[0]["rows"]) if row["attack"] != "worst"]
    labels = []
    for index in indices:
        row = policies[0]["rows"][index]
        several_budgets = len(epsilons) > 1 and row["attack"] in OBSERVATION_ATTACKS
        labels.append(f"{row_label(row)}\nε = {row['epsilon']:g}" if several_budgets else row_label(row))
    positions = np.arange(len(indices))
    width = 0.8 / len(policies)

    figure, axes = plt.subplots(figsize=(max(4.0, 1.2 * len(indices) + 2.0), 3.5), layout="constrained")
    for offset, policy in enumerate(policies):
        rows = [policy["rows"][index] for index in indices]
        axes.bar(
            positions + (offset - (len(policies) - 1) / 2) * width,
            [row["mean"] for row in rows],
            width,
            yerr=[row["std"] for row in rows],
            capsize=3,
            label=policy["name"],
        )
    axes.set_xticks(positions, labels)
    axes.set_ylabel("mean return")
    budgets = ", ".join(f"{epsilon:g}" for epsilon in epsilons)
    axes.set_title(f"{record['env_id']}, ε = {budgets}, {record['episodes']} episodes per attack")
    axes.legend()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_robustness_curves(record: dict[str, Any], path: str | Path) -> Path:
    """
    Draw the mean return against ε for each policy and observation attack, and save it as PNG.

    Each attack has one color and each policy one line style and marker, so a teacher and its
    student share one figure. The ``worst`` rows form a wide grey line per policy, drawn beneath
    the others so that the attack it follows stays visible. They include the dynamics attacks,
    which have no line of their own because they do not depend on ε.

    :param record: a results record of :func:`rl_advkd.evaluation.results_record`
    :param path: the image file to write
    :return: the written file
    """
    plt = _pyplot()
    from rl_advkd.attacks import OBSERVATION_ATTACKS

    attacks = [attack for attack in (*OBSERVATION_ATTACKS, "worst") if _has_attack(record, attack)]
    colors = {attack: f"C{index}" for index, attack in enumerate(attacks)}
    colors["worst"] = "grey"
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]

    figure, axes = plt.subplots(figsize=(8.0, 4.0), layout="constrained")
    for index, policy in enumerate(record["policies"]):
        for attack in attacks:
            points = sorted((row["epsilon"], row["mean"]) for row in policy["rows"] if row["attack"] == attack)
            if not points:
                continue
            epsilons, means = zip(*points)
            worst = attack == "worst"
            axes.plot(
                epsilons,
                means,
                color=colors[attack],
                linestyle=styles[index % len(styles)],
                marker=markers[index % len(markers)],
                linewidth=5.0 if worst else 1.5,
                alpha=0.4 if worst else 1.0,
                zorder=1 if worst else 2,
                label=f"{policy['name']}: {attack}",
            )
    axes.set_xlabel("ε (ℓ∞ budget, normalized units)")
    axes.set_ylabel("mean return")
    axes.set_title(f"{record['env_id']}, {record['episodes']} episodes per point")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _has_attack(record: dict[str, Any], attack: str) -> bool:
    return any(row["attack"] == attack for policy in record["policies"] for row in policy["rows"])


def plot_sensitivity(report: dict[str, Any], path: str | Path) -> Path:
    """
    Draw two bar plots over the observation dimensions of a sensitivity report and save them as PNG.

    The top plot is the return lost when only that dimension is attacked, the bottom one the
    share of ε that the strongest gradient attack spends on it. Dimensions are in index order, so
    the two plots line up.

    :param report: a report of :func:`rl_advkd.sensitivity.sensitivity_report`
    :param path: the image file to write
    :return: the written file
    """
    plt = _pyplot()

    entries = sorted(report["dimensions"], key=lambda entry: entry["dimension"])
    positions = np.arange(len(entries))
    figure, (loss_axes, share_axes) = plt.subplots(
        2, 1, figsize=(max(6.0, 0.5 * len(entries) + 2.0), 5.0), sharex=True, layout="constrained"
    )
    figure.suptitle(f"{report['env_id']}, {report['policy']['name']}, ε = {report['epsilon']:g}", fontsize="medium")
    loss_axes.bar(positions, [entry["return_lost"] for entry in entries], color="C3")
    loss_axes.set_ylabel("return lost")
    loss_axes.set_title("only this dimension attacked (MAD)", fontsize="small")
    share_axes.bar(positions, [entry["budget_share"] for entry in entries], color="C0")
    share_axes.set_ylabel(f"mean |δ| / ε ({report['strongest_attack']})")
    share_axes.set_xlabel("observation dimension")
    share_axes.set_xticks(positions, [str(entry["dimension"]) for entry in entries])

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
