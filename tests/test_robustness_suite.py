"""The critic and optimal attacks, robustness curves over several budgets, and the sensitivity report."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.policies import ActorCriticPolicy

from rl_advkd.adversaries import ObservationPerturbation
from rl_advkd.attacks import perturb, train_optimal_attackers
from rl_advkd.cli import main
from rl_advkd.cli_distill import parse_policy_paths
from rl_advkd.errors import UsageError
from rl_advkd.evaluation import evaluate_policy, optimal_row, run_episodes
from rl_advkd.normalization import ObservationNormalizer
from rl_advkd.policies import FrozenPolicy
from rl_advkd.sensitivity import sensitivity_report, write_report
from conftest import PENDULUM, SHIPPED_PENDULUM_TEACHER, pendulum_states

SHIPPED_PENDULUM_STUDENT = SHIPPED_PENDULUM_TEACHER.parent / "student" / "student.zip"

# The dimension of InvertedPendulum-v5's observation (cart position) that the constructed weak
# policy over-weights, and by how much.
WEAK_DIMENSION = 0
WEAK_FACTOR = 20.0


def _std(policy: FrozenPolicy) -> np.ndarray:
    return np.sqrt(policy.normalizer.var + policy.normalizer.epsilon)


@pytest.fixture(scope="module")
def corner_attacker(pendulum_teacher):
    """A briefly trained optimal attacker whose mean is pushed far outside [-1, 1], so its clip matters."""
    (attacker,) = train_optimal_attackers(pendulum_teacher, PENDULUM, 0.3, total_timesteps=256, count=1, seed=0)
    with th.no_grad():
        attacker.model.policy.action_net.bias.copy_(th.tensor([5.0, -5.0, 5.0, -5.0]))
    return attacker


@pytest.mark.parametrize("attack", ["random", "mad", "critic", "optimal"])
def test_attack_stays_inside_epsilon_ball(pendulum_teacher, corner_attacker, attack):
    raw = pendulum_states(128)
    clean = th.as_tensor(pendulum_teacher.normalizer.normalize(raw))
    assert clean.abs().max().item() < pendulum_teacher.normalizer.clip_obs

    epsilon = 0.3
    generator = th.Generator().manual_seed(0)
    perturbed = perturb(attack, pendulum_teacher, clean, epsilon, generator=generator, attacker=corner_attacker)
    shift = (perturbed - clean).abs()
    assert shift.max().item() <= epsilon + 1e-6
    assert shift.max().item() > 0.5 * epsilon

    # The same perturbation in raw units: the observation the policy acts as if it saw.
    std = _std(pendulum_teacher)
    raw_perturbed = perturbed.double().numpy() * std + pendulum_teacher.normalizer.mean
    raw_shift = np.abs(raw_perturbed - raw)
    assert np.all(raw_shift <= epsilon * std * (1 + 1e-5) + 1e-7)


def test_optimal_training_view_stays_inside_ball(pendulum_teacher):
    # During training the attacker shifts raw observations, which the victim then normalizes.
    epsilon = 0.3
    perturbation = ObservationPerturbation.from_normalizer(epsilon, pendulum_teacher.normalizer)
    raw = pendulum_states(64)
    actions = np.random.default_rng(1).uniform(-3.0, 3.0, size=raw.shape)
    seen = np.stack([perturbation.perturb_observation(obs, action) for obs, action in zip(raw, actions)])

    assert np.all(np.abs(seen - raw) <= epsilon * _std(pendulum_teacher) * (1 + 1e-5) + 1e-7)
    normalized_shift = pendulum_teacher.normalizer.normalize(seen) - pendulum_teacher.normalizer.normalize(raw)
    assert np.abs(normalized_shift).max() <= epsilon + 1e-5


def test_optimal_rejects_other_epsilon(pendulum_teacher, corner_attacker):
    clean = th.as_tensor(pendulum_teacher.normalizer.normalize(pendulum_states(4)))
    with pytest.raises(ValueError, match="trained at epsilon 0.3, not 0.1"):
        perturb("optimal", pendulum_teacher, clean, 0.1, attacker=corner_attacker)
    with pytest.raises(ValueError, match="needs a trained attacker"):
        perturb("optimal", pendulum_teacher, clean, 0.3)


def test_critic_attack_lowers_value(pendulum_teacher):
    clean = th.as_tensor(pendulum_teacher.normalizer.normalize(pendulum_states(128)))
    generator = th.Generator().manual_seed(0)
    attacked = perturb("critic", pendulum_teacher, clean, 0.3, generator=generator)
    noisy = perturb("random", pendulum_teacher, clean, 0.3, generator=generator)
    with th.no_grad():
        clean_value = pendulum_teacher.value(clean).mean().item()
        attacked_value = pendulum_teacher.value(attacked).mean().item()
        noisy_value = pendulum_teacher.value(noisy).mean().item()
    assert attacked_value < clean_value
    assert attacked_value < noisy_value


def test_value_of_tqc_quantile_critics():
    tqc = pytest.importorskip("sb3_contrib").TQC
    model = tqc("MlpPolicy", PENDULUM, policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    policy = FrozenPolicy(model.policy, ObservationNormalizer.identity(model.observation_space.shape), PENDULUM)
    obs = th.as_tensor(pendulum_states(8), dtype=th.float32)

    with th.no_grad():
        action = model.policy.actor(obs, deterministic=True)
        quantiles = model.policy.critic(obs, action)
        expected = quantiles.mean(dim=2).min(dim=1).values
        value = policy.value(obs)
    assert quantiles.shape[:2] == (8, model.policy.critic.n_critics)
    assert th.allclose(value, expected, atol=1e-6)


@pytest.mark.parametrize("algorithm", [SAC, TD3])
def test_value_of_q_critics(algorithm):
    model = algorithm("MlpPolicy", PENDULUM, policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    shape = model.observation_space.shape
    policy = FrozenPolicy(model.policy, ObservationNormalizer.identity(shape), PENDULUM)
    obs = th.as_tensor(pendulum_states(8), dtype=th.float32)

    with th.no_grad():
        # SB3's actor returns the action in the [-1, 1] space its critics were trained in.
        action = model.policy.actor(obs, deterministic=True) if algorithm is SAC else model.policy.actor(obs)
        expected = th.cat(model.policy.critic(obs, action), dim=1).min(dim=1).values
        value = policy.value(obs)
    assert value.shape == (8,)
    assert th.allclose(value, expected, atol=1e-6)

    attacked = perturb("critic", policy, obs, 0.3, generator=th.Generator().manual_seed(0))
    with th.no_grad():
        assert policy.value(attacked).mean() < value.mean()


def test_optimal_lowers_return(pendulum_teacher):
    # At ε = 2 random noise topples the teacher, so a PPO attacker finds falls to learn from
    # within 2048 steps; at 0.3 the shipped teacher survives an attacker this brief.
    epsilon, episodes = 2.0, 3
    natural = run_episodes(pendulum_teacher, PENDULUM, "natural", 0.0, episodes, show_progress=False)
    row = optimal_row(
        pendulum_teacher, PENDULUM, epsilon, episodes, total_timesteps=2048, attackers=2, show_progress=False
    )

    assert row["attack"] == "optimal"
    assert row["epsilon"] == epsilon
    assert row["mean"] < natural.mean - 500.0
    assert [entry["name"] for entry in row["attackers"]] == ["default", "fast"]
    assert all(entry["steps"] == 2048 for entry in row["attackers"])
    # The winner is the attacker with the lowest mean on the selection episodes, which are not
    # the evaluation episodes.
    selection = {entry["name"]: entry["selection_mean"] for entry in row["attackers"]}
    assert row["attacker"] == min(selection, key=selection.get)
    assert all(entry["selection_episodes"] == episodes for entry in row["attackers"])


def test_optimal_rejects_zero_selection_episodes(pendulum_teacher):
    with pytest.raises(ValueError, match="selection_episodes must be >= 1, got 0"):
        optimal_row(pendulum_teacher, PENDULUM, 0.3, 3, total_timesteps=64, selection_episodes=0, show_progress=False)


def test_rows_per_epsilon_with_worst(pendulum_teacher):
    record = evaluate_policy(
        pendulum_teacher, PENDULUM, ["natural", "random", "force-random"], [0.0, 0.3], episodes=2, show_progress=False
    )
    rows = [(row["attack"], row["epsilon"]) for row in record["rows"]]
    assert rows == [
        ("natural", 0.0), ("natural", 0.3), ("random", 0.0), ("random", 0.3), ("force-random", 0.0),
        ("worst", 0.0), ("worst", 0.3),
    ]  # fmt: skip

    by_key = {(row["attack"], row["epsilon"]): row for row in record["rows"]}
    # ε = 0 leaves the observation clean, so that row repeats the natural episodes.
    assert by_key[("random", 0.0)]["returns"] == by_key[("natural", 0.0)]["returns"]
    for epsilon in (0.0, 0.3):
        at_epsilon = [by_key[(attack, epsilon)]["mean"] for attack in ("natural", "random")]
        lowest = min(at_epsilon + [by_key[("force-random", 0.0)]["mean"]])
        assert by_key[("worst", epsilon)]["mean"] == lowest


def test_cli_curves_for_two_policies(tmp_path):
    out = tmp_path / "eval" / "results.json"
    code = main([
        "evaluate", "--policy", str(SHIPPED_PENDULUM_STUDENT), "--policy", str(SHIPPED_PENDULUM_TEACHER),
        "--env", PENDULUM, "--attacks", "natural,random,mad", "--epsilon", "0,0.1,0.3", "--episodes", "2",
        "--out", str(out),
    ])  # fmt: skip
    assert code == 0

    record = json.loads(out.read_text())
    assert record["epsilons"] == [0.0, 0.1, 0.3]
    assert record["epsilon"] == 0.3
    assert [policy["name"] for policy in record["policies"]] == ["student", "teacher"]
    for policy in record["policies"]:
        keys = [(row["attack"], row["epsilon"]) for row in policy["rows"]]
        for attack in ("natural", "random", "mad", "worst"):
            assert [key[1] for key in keys if key[0] == attack] == [0.0, 0.1, 0.3], attack
        assert len(keys) == 12

    table = out.with_suffix(".md").read_text()
    assert "| attack | ε | student return (falls) | teacher return (falls) |" in table
    assert table.count("**worst**") == 3
    png = out.with_name("results-curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_policy_paths_comma_separated():
    student, teacher = str(SHIPPED_PENDULUM_STUDENT), str(SHIPPED_PENDULUM_TEACHER)
    assert parse_policy_paths([f"{student},{teacher}"]) == [SHIPPED_PENDULUM_STUDENT, SHIPPED_PENDULUM_TEACHER]
    assert parse_policy_paths([student, teacher]) == [SHIPPED_PENDULUM_STUDENT, SHIPPED_PENDULUM_TEACHER]
    with pytest.raises(UsageError, match="listed twice"):
        parse_policy_paths([teacher, f"{student},{teacher}"])


@pytest.mark.parametrize(
    "epsilon, expected",
    [("0.1,abc", "'abc' is not a number"), ("0.1,0.1", "0.1 is listed twice"), ("0,-0.2", "got -0.2")],
)
def test_cli_rejects_bad_epsilon_list(capsys, epsilon, expected):
    code = main(["evaluate", "--policy", str(SHIPPED_PENDULUM_TEACHER), "--env", PENDULUM, "--epsilon", epsilon])
    assert code == 2
    assert expected in capsys.readouterr().err


def _weak_policy(teacher: FrozenPolicy) -> FrozenPolicy:
    """
    A linear policy that balances the pendulum and over-weights WEAK_DIMENSION.

    Its gains are a least-squares fit of the teacher's actions. WEAK_DIMENSION's standard deviation
    in the normalizer and its gain are both multiplied by WEAK_FACTOR, so clean episodes are
    unchanged while a perturbation of ε in normalized units moves the action WEAK_FACTOR times more
    through that dimension.
    """
    env = gym.make(PENDULUM)
    states, actions = [], []
    observation, _ = env.reset(seed=0)
    for _ in range(2000):
        action = teacher.act(observation[None])[0]
        states.append(observation)
        actions.append(action)
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            observation, _ = env.reset()
    inputs = teacher.normalizer.normalize(np.stack(states))
    solution, *_ = np.linalg.lstsq(np.c_[inputs, np.ones(len(inputs))], np.stack(actions), rcond=None)
    gains, bias = solution[:-1, 0].copy(), solution[-1, 0]

    std = _std(teacher)
    std[WEAK_DIMENSION] *= WEAK_FACTOR
    gains[WEAK_DIMENSION] *= WEAK_FACTOR
    normalizer = ObservationNormalizer(mean=teacher.normalizer.mean, var=std**2 - 1e-8, clip_obs=10.0)

    policy = ActorCriticPolicy(env.observation_space, env.action_space, lambda _: 3e-4, net_arch={"pi": [], "vf": []})
    with th.no_grad():
        policy.action_net.weight.copy_(th.tensor(gains[None], dtype=th.float32))
        policy.action_net.bias.fill_(float(bias))
    env.close()
    return FrozenPolicy(policy, normalizer, PENDULUM, name="weak")


def test_sensitivity_ranks_weak_dimension_first(pendulum_teacher, tmp_path):
    weak = _weak_policy(pendulum_teacher)
    report = sensitivity_report(weak, PENDULUM, 0.1, episodes=2, show_progress=False)

    assert report["natural"]["mean"] == 1000.0
    first, *others = report["dimensions"]
    assert first["dimension"] == WEAK_DIMENSION
    assert first["rank"] == 1
    assert first["return_lost"] > 500.0
    assert all(entry["return_lost"] < 100.0 for entry in others)
    assert report["strongest_attack"] in {"mad", "critic"}
    shares = {entry["dimension"]: entry["budget_share"] for entry in report["dimensions"]}
    assert all(0.0 <= share <= 1.0 + 1e-6 for share in shares.values())

    files = write_report(report, tmp_path)
    assert json.loads(files["json"].read_text())["dimensions"][0]["dimension"] == WEAK_DIMENSION
    assert files["markdown"].read_text().startswith("| rank | dimension |")
    assert files["plot"].read_bytes()[:4] == b"\x89PNG"


def test_sensitivity_cli_rejects_zero_epsilon(capsys, tmp_path):
    code = main(["sensitivity", "--policy", str(SHIPPED_PENDULUM_TEACHER), "--env", PENDULUM, "--epsilon", "0",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "--epsilon 0 attacks nothing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_sensitivity_cli_writes_report(capsys, tmp_path):
    out = tmp_path / "report"
    code = main(["sensitivity", "--policy", str(SHIPPED_PENDULUM_TEACHER), "--env", PENDULUM, "--epsilon", "1.0",
                 "--episodes", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads((out / "sensitivity.json").read_text())
    assert sorted(entry["dimension"] for entry in report["dimensions"]) == [0, 1, 2, 3]
    assert [entry["rank"] for entry in report["dimensions"]] == [1, 2, 3, 4]
    assert (out / "sensitivity.png").is_file()
    assert "| rank | dimension |" in capsys.readouterr().out
