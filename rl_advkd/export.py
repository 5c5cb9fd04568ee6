"""
Export a frozen policy as one graph from the raw observation to the action the env receives.

The graph contains the frozen observation normalization (with its clip), the actor MLP, the
Gaussian mean as the deterministic action and the clip to the action-space bounds, so a
deployment needs no statistics file and no Stable-Baselines3. Two formats are written:

* ONNX, built node by node from the weights with the ``onnx`` package, for
  :mod:`rl_advkd.deploy` and any other ONNX runtime;
* TorchScript, traced from :class:`DeterministicActor`, for ``torch.jit.load``.

Both carry the same metadata (:func:`policy_metadata`) as a JSON string: in the ONNX model's
``metadata_props`` under the key ``rl_advkd``, and in the TorchScript archive as the extra
file ``rl_advkd.json``.
"""

import copy
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch as th
from gymnasium import spaces
from onnx import TensorProto, helper, numpy_helper
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor

from rl_advkd import __version__
from rl_advkd.errors import UsageError
from rl_advkd.policies import FrozenPolicy
from rl_advkd.provenance import utc_now
from rl_advkd.saved_student import read_student_attributes, recorded_env_id

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
METADATA_KEY = "rl_advkd"
TORCHSCRIPT_METADATA_FILE = "rl_advkd.json"
INPUT_NAME = "obs"
OUTPUT_NAME = "action"
# Opset 17 is the one of ONNX 1.12 (see onnx.helper.VERSION_TABLE), so runtimes built on
# ONNX 1.12 or later read the graph.
ONNX_OPSET = 17
METADATA_VERSION = 1
RESULTS_FILE = "results.json"

# Activation modules of the actor MLP and the ONNX operator that computes each.
ONNX_ACTIVATIONS: dict[type[th.nn.Module], str] = {
    th.nn.Tanh: "Tanh",
    th.nn.ReLU: "Relu",
    th.nn.ELU: "Elu",
    th.nn.LeakyReLU: "LeakyRelu",
    th.nn.Sigmoid: "Sigmoid",
}


class DeterministicActor(th.nn.Module):
    """
    The deterministic action of a frozen policy as one module: normalize, run the actor MLP,
    take the Gaussian mean and clip it to the action bounds.

    Observations of any float dtype are cast to float32 first, so a float64 batch from a
    MuJoCo env can be passed as it is. The input is a batch, (batch, *observation_shape).

    :param policy: the frozen teacher or student; its actor modules are copied
    """

    def __init__(self, policy: FrozenPolicy) -> None:
        super().__init__()
        features_extractor, policy_net, action_net = actor_modules(policy)
        normalizer = policy.normalizer
        self.clip_obs = float(normalizer.clip_obs)
        self.register_buffer("obs_mean", _float_buffer(normalizer.mean))
        self.register_buffer("obs_std", _float_buffer(np.sqrt(normalizer.var + normalizer.epsilon)))
        # Flat bounds, because the action head outputs (batch, action_dim) whatever the Box shape.
        self.register_buffer("action_low", _float_buffer(policy.action_space.low.ravel()))
        self.register_buffer("action_high", _float_buffer(policy.action_space.high.ravel()))
        self.squashed = policy.squashed
        self.features_extractor = features_extractor
        self.policy_net = policy_net
        self.action_net = action_net

    def forward(self, obs: th.Tensor) -> th.Tensor:
        obs = obs.to(th.float32)
        normalized = th.clamp((obs - self.obs_mean) / self.obs_std, -self.clip_obs, self.clip_obs)
        mean_action = self.action_net(self.policy_net(self.features_extractor(normalized)))
        if self.squashed:
            mean_action = self.action_low + (th.tanh(mean_action) + 1.0) * (self.action_high - self.action_low) / 2.0

        # Lower bound first, then upper bound: the order of np.clip, which SB3's predict applies.
        return th.minimum(th.maximum(mean_action, self.action_low), self.action_high)


def _float_buffer(values: np.ndarray) -> th.Tensor:
    # A float32 copy: the normalizer's arrays are read-only, and torch warns about sharing those.
    return th.from_numpy(np.array(values, dtype=np.float32))


def actor_modules(policy: FrozenPolicy) -> tuple[FlattenExtractor, th.nn.Sequential, th.nn.Linear]:
    """
    Copy the modules that compute the Gaussian mean: features extractor, actor MLP and action head.

    :raise ValueError: for an actor other than a flatten extractor followed by linear layers and
        the activations in :data:`ONNX_ACTIVATIONS`
    """
    sb3_policy = policy.policy
    if not isinstance(sb3_policy, ActorCriticPolicy):
        # NOTE: SAC, TQC, TD3 and DDPG actors have their own module layout. Export covers the
        # actor-critic policies of PPO and A2C, which every rl_advkd student is.
        raise ValueError(
            f"cannot export a {type(sb3_policy).__name__}; export supports students and PPO or A2C teachers"
        )
    if policy.raw_input:
        raise ValueError("cannot export a teacher that reads raw observations; export its student instead")
    features_extractor = sb3_policy.pi_features_extractor
    if not isinstance(features_extractor, FlattenExtractor):
        raise ValueError(
            f"cannot export a policy with a {type(features_extractor).__name__} features extractor; "
            "export supports SB3's MlpPolicy, whose extractor is FlattenExtractor"
        )
    policy_net = sb3_policy.mlp_extractor.policy_net
    for layer in policy_net:
        if not isinstance(layer, th.nn.Linear) and type(layer) not in ONNX_ACTIVATIONS:
            supported = ", ".join(["Linear", *(cls.__name__ for cls in ONNX_ACTIVATIONS)])
            raise ValueError(f"cannot export an actor layer of type {type(layer).__name__}; export supports {supported}")

    # Copies, so that tracing and exporting never touch a policy that is still in use.
    modules = copy.deepcopy((features_extractor, policy_net, sb3_policy.action_net))
    for module in modules:
        module.eval()
        module.requires_grad_(False)
    return modules


def build_onnx_model(policy: FrozenPolicy, metadata: dict[str, Any]) -> onnx.ModelProto:
    """
    Build the ONNX graph of :class:`DeterministicActor` from the policy's weights.

    Input ``obs`` is float32 (batch, *observation_shape) and output ``action`` is float32
    (batch, action_dim), with a free batch dimension.
    """
    _, policy_net, action_net = actor_modules(policy)
    normalizer = policy.normalizer
    obs_shape = list(policy.observation_space.shape)
    action_dim = int(np.prod(policy.action_space.shape))
    initializers = [
        _float_tensor("obs_mean", normalizer.mean),
        _float_tensor("obs_std", np.sqrt(normalizer.var + normalizer.epsilon)),
        _float_tensor("clip_low", np.array(-normalizer.clip_obs)),
        _float_tensor("clip_high", np.array(normalizer.clip_obs)),
    ]
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "obs_mean"], ["centered"]),
        helper.make_node("Div", ["centered", "obs_std"], ["scaled"]),
        helper.make_node("Clip", ["scaled", "clip_low", "clip_high"], ["normalized"]),
    ]
    latent = "normalized"
    if len(obs_shape) > 1:
        nodes.append(helper.make_node("Flatten", [latent], ["flat"], axis=1))
        latent = "flat"

    # The actor MLP and then the action head; the head's output is the Gaussian mean.
    for index, layer in enumerate([*policy_net, action_net]):
        output = f"layer{index}"
        if isinstance(layer, th.nn.Linear):
            initializers.append(_float_tensor(f"{output}.weight", layer.weight))
            initializers.append(_float_tensor(f"{output}.bias", layer.bias))
            # Gemm with transB computes x @ W.T + b, as torch.nn.Linear does.
            nodes.append(helper.make_node("Gemm", [latent, f"{output}.weight", f"{output}.bias"], [output], transB=1))
        else:
            nodes.append(_activation_node(layer, latent, output))
        latent = output

    if policy.squashed:
        nodes.extend(_squash_nodes(policy.action_space, latent, initializers))
        latent = "squashed_action"
    nodes.extend(_action_clip_nodes(policy.action_space, latent, initializers))

    graph = helper.make_graph(
        nodes,
        "rl_advkd_policy",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *obs_shape])],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", action_dim])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="rl_advkd",
        producer_version=__version__,
        doc_string=f"Deterministic {metadata.get('policy')} policy for {metadata.get('env_id')}: raw observation in, clipped action out",
    )
    helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata, allow_nan=False)})
    onnx.checker.check_model(model, full_check=True)
    return model


def _squash_nodes(action_space: spaces.Box, input_name: str, initializers: list) -> list[onnx.NodeProto]:
    """Map the Gaussian mean u to ``low + (tanh(u) + 1) * (high - low) / 2``, the squashed head's action."""
    low, high = action_space.low.ravel(), action_space.high.ravel()
    initializers.append(_float_tensor("squash_one", np.array(1.0)))
    initializers.append(_float_tensor("squash_half_range", (high - low) / 2.0))
    initializers.append(_float_tensor("squash_low", low))
    return [
        helper.make_node("Tanh", [input_name], ["tanh_mean"]),
        helper.make_node("Add", ["tanh_mean", "squash_one"], ["tanh_shifted"]),
        helper.make_node("Mul", ["tanh_shifted", "squash_half_range"], ["tanh_scaled"]),
        helper.make_node("Add", ["tanh_scaled", "squash_low"], ["squashed_action"]),
    ]


def _action_clip_nodes(action_space: spaces.Box, input_name: str, initializers: list) -> list[onnx.NodeProto]:
    """Clip to the action bounds: one Clip when all dimensions share their bounds, else Max then Min."""
    low, high = action_space.low.ravel(), action_space.high.ravel()
    if np.all(low == low[0]) and np.all(high == high[0]):
        # Clip takes scalar bounds only; one node instead of two saves time at batch size 1.
        initializers.append(_float_tensor("action_low", np.array(low[0])))
        initializers.append(_float_tensor("action_high", np.array(high[0])))
        return [helper.make_node("Clip", [input_name, "action_low", "action_high"], [OUTPUT_NAME])]

    initializers.append(_float_tensor("action_low", low))
    initializers.append(_float_tensor("action_high", high))
    return [
        helper.make_node("Max", [input_name, "action_low"], ["action_above_low"]),
        helper.make_node("Min", ["action_above_low", "action_high"], [OUTPUT_NAME]),
    ]


def _activation_node(layer: th.nn.Module, input_name: str, output_name: str) -> onnx.NodeProto:
    op_type = ONNX_ACTIVATIONS[type(layer)]
    if isinstance(layer, th.nn.ELU):
        return helper.make_node(op_type, [input_name], [output_name], alpha=float(layer.alpha))
    if isinstance(layer, th.nn.LeakyReLU):
        return helper.make_node(op_type, [input_name], [output_name], alpha=float(layer.negative_slope))
    return helper.make_node(op_type, [input_name], [output_name])


def _float_tensor(name: str, values: Any) -> onnx.TensorProto:
    if isinstance(values, th.Tensor):
        values = values.detach().cpu().numpy()
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name=name)


def export_onnx(policy: FrozenPolicy, out: str | Path, metadata: dict[str, Any]) -> Path:
    """Write the policy as an ONNX model with ``metadata`` in its ``metadata_props``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(build_onnx_model(policy, metadata), out)
    return out


def export_torchscript(policy: FrozenPolicy, out: str | Path, metadata: dict[str, Any]) -> Path:
    """Write the policy as a traced TorchScript module with ``metadata`` as the extra file ``rl_advkd.json``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    actor = DeterministicActor(policy).eval()
    example = th.zeros((2, *policy.observation_space.shape), dtype=th.float32)
    traced = th.jit.trace(actor, example)
    th.jit.save(traced, str(out), _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(metadata, allow_nan=False)})
    return out


def load_torchscript(path: str | Path) -> tuple[th.jit.ScriptModule, dict[str, Any]]:
    """Load an exported TorchScript policy and its metadata."""
    extra_files = {TORCHSCRIPT_METADATA_FILE: ""}
    module = th.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
    text = extra_files[TORCHSCRIPT_METADATA_FILE]
    if not text:
        raise ValueError(f"{path} has no {TORCHSCRIPT_METADATA_FILE}; export it with 'rl-advkd export --format torchscript'")
    return module, json.loads(text)


def space_metadata(space: spaces.Box) -> dict[str, Any]:
    """Describe a Box space in JSON: shape, dtype and bounds, with infinite bounds as ``"inf"`` and ``"-inf"``."""
    return {
        "shape": list(space.shape),
        "dtype": str(space.dtype),
        "low": _json_floats(space.low),
        "high": _json_floats(space.high),
    }


def _json_floats(values: np.ndarray) -> list[float | str]:
    # Strict JSON has no infinity, and MuJoCo observation spaces are unbounded.
    converted: list[float | str] = []
    for value in np.asarray(values, dtype=float).ravel().tolist():
        if math.isfinite(value):
            converted.append(value)
        else:
            converted.append("inf" if value > 0 else "-inf")
    return converted


def policy_metadata(
    policy: FrozenPolicy,
    kind: str,
    epsilon: float | None,
    teacher_sha256: str | None,
    evaluation: dict[str, Any] | None,
    source: Path | None = None,
) -> dict[str, Any]:
    """
    Assemble the metadata stored in an exported file.

    :param kind: ``"student"`` or ``"teacher"``
    :param epsilon: the ℓ∞ budget the student was distilled with (normalized units); ``None`` for a teacher
    :param teacher_sha256: SHA-256 of the teacher's model zip (for a teacher, of its own zip)
    :param evaluation: summary of a ``results.json`` next to the policy, or ``None``
    :param source: the file the policy was loaded from
    """
    normalizer = policy.normalizer
    return {
        "format_version": METADATA_VERSION,
        "rl_advkd_version": __version__,
        "created": utc_now(),
        "policy": kind,
        "env_id": policy.env_id,
        "epsilon": epsilon,
        "teacher_sha256": teacher_sha256,
        "source": str(source) if source is not None else None,
        "observation_space": space_metadata(policy.observation_space),
        "action_space": space_metadata(policy.action_space),
        "head": policy.head,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", *policy.observation_space.shape]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", int(np.prod(policy.action_space.shape))]},
        # Stored so that a runtime can express a perturbation of ε normalized units in raw units.
        "normalization": {
            "mean": normalizer.mean.tolist(),
            "var": normalizer.var.tolist(),
            "clip_obs": _json_floats(np.array([normalizer.clip_obs]))[0],
            "epsilon": normalizer.epsilon,
        },
        "actor_parameters": policy.actor_parameter_count(),
        "evaluation": evaluation,
    }


def evaluation_summary(results_path: Path, kind: str, policy_path: Path) -> dict[str, Any] | None:
    """
    Summarize the rows of ``results.json`` that belong to the exported policy.

    The entry is found by its path, else by its name (``student`` or ``teacher``).

    :return: the summary, or ``None`` when the file does not exist or lists no matching policy
    """
    if not results_path.is_file():
        return None
    record = json.loads(results_path.read_text())
    entries = record.get("policies", [])
    resolved = policy_path.resolve()
    match = next((entry for entry in entries if entry.get("path") and _same_file(entry["path"], resolved)), None)
    if match is None:
        match = next((entry for entry in entries if entry.get("name") == kind), None)
    if match is None:
        logger.warning("%s lists no %s policy; the export carries no evaluation summary", results_path, kind)
        return None

    return {
        "source": str(results_path),
        "created": record.get("created"),
        "env_id": record.get("env_id"),
        "epsilon": record.get("epsilon"),
        "episodes": record.get("episodes"),
        "seed": record.get("seed"),
        "deterministic": record.get("deterministic"),
        "rows": [
            {key: row.get(key) for key in ("attack", "epsilon", "mean", "std", "falls", "episodes")}
            for row in match.get("rows", [])
        ],
    }


def _same_file(recorded: str, resolved: Path) -> bool:
    # Paths in results.json may be relative to the folder the run was started from.
    candidate = Path(recorded)
    return candidate.exists() and candidate.resolve() == resolved


def load_exportable(path: str | Path, env_id: str | None = None) -> tuple[FrozenPolicy, dict[str, Any]]:
    """
    Load a student zip or a teacher (folder or model zip) with the metadata for its export.

    :param env_id: the task; ``None`` takes the one recorded with the policy
    :raise UsageError: for a missing file, an unknown task or a policy that does not fit it
    """
    from rl_advkd.cli_distill import load_policy

    path = Path(path)
    if not path.exists():
        raise UsageError(f"policy not found: {path} does not exist")
    if not path.is_dir() and path.suffix != ".zip":
        raise UsageError(f"cannot export {path}: pass a student .zip, or a teacher folder or its model .zip")
    env_id = env_id or recorded_env_id(path)
    if env_id is None:
        raise UsageError(f"{path} records no env id; pass --env ENV_ID")

    policy = load_policy(path, env_id)
    student = read_student_attributes(path)
    if student is not None:
        kind, epsilon, teacher_sha256 = "student", student["epsilon"], student["teacher_sha256"]
    else:
        kind, epsilon, teacher_sha256 = "teacher", None, policy.info.get("sha256")
    folder = path if path.is_dir() else path.parent
    evaluation = evaluation_summary(folder / RESULTS_FILE, kind, policy.path or path)
    metadata = policy_metadata(policy, kind, epsilon, teacher_sha256, evaluation, source=policy.path or path)
    return policy, metadata


def infer_format(out: str | Path | None, fmt: str | None) -> str:
    """
    Choose the export format from ``--format`` and the suffix of ``--out``.

    :raise UsageError: when the two disagree or the format is unknown
    """
    suffix_format = {suffix: name for name, suffix in SUFFIXES.items()}
    from_suffix = suffix_format.get(Path(out).suffix) if out is not None else None
    if fmt is None:
        return from_suffix or "onnx"
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if from_suffix is not None and from_suffix != fmt:
        raise UsageError(f"--out {out} has the suffix of {from_suffix}, not {fmt}; use {SUFFIXES[fmt]} or --format {from_suffix}")
    return fmt


def export_policy(
    path: str | Path, fmt: str = "onnx", out: str | Path | None = None, env_id: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """
    Export a student zip or a teacher as an ONNX or TorchScript file.

    :param path: student zip, teacher folder or teacher model zip
    :param fmt: ``"onnx"`` or ``"torchscript"``
    :param out: the file to write; defaults to the policy's path with the format's suffix
        (``model.onnx`` inside a teacher folder)
    :param env_id: the task; ``None`` takes the one recorded with the policy
    :return: the written file and its metadata
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    policy, metadata = load_exportable(path, env_id)
    if out is None:
        path = Path(path)
        out = (path / "model" if path.is_dir() else path).with_suffix(SUFFIXES[fmt])

    writer = export_onnx if fmt == "onnx" else export_torchscript
    written = writer(policy, out, metadata)
    logger.debug("exported %s %s for %s to %s", metadata["policy"], fmt, metadata["env_id"], written)
    return written, metadata
