"""
Load an SB3 teacher from files of unknown origin without running pickled code.

Stable-Baselines3 stores parts of a model zip with cloudpickle: each entry of its ``data`` JSON
that JSON cannot hold becomes a dict with a ``:serialized:`` base64 pickle. ``vecnormalize.pkl``
is a plain pickle of the whole ``VecNormalize`` wrapper. ``PPO.load`` and ``pickle.load`` on such
files can run arbitrary code. This module reads the same information another way:

* :func:`read_model_zip` parses the ``data`` JSON with :mod:`json` only, using the attributes that
  SB3 writes in plain text next to each pickle, and loads ``policy.pth`` with
  ``torch.load(weights_only=True)``.
* :func:`build_policy` rebuilds the SB3 policy object from the environment's spaces and the
  kwargs read from the JSON, then loads the weights.
* :func:`read_vecnormalize` unpickles the statistics with an allow-list of globals, so SB3 and
  gymnasium classes become inert records and every other global raises.
* :func:`find_zoo_run` detects an RL Baselines3 Zoo run folder and reads its ``config.yml`` with a
  safe YAML loader.

Anything the safe path cannot rebuild raises a :class:`ValueError` that names the value and
points to ``--trust-teacher``, the option that loads a trusted file with SB3's own loader.
"""

import importlib
import io
import json
import logging
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch as th
import yaml
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

logger = logging.getLogger(__name__)

TRUST_HINT = "If you trust this file, pass --trust-teacher to load it with Stable-Baselines3's own loader"

# Policy classes that the safe path rebuilds, keyed by the ``__module__`` that SB3 records for
# ``policy_class`` and the class name taken from the recorded ``__init__`` repr. The "MlpPolicy"
# names of PPO, A2C, SAC, TD3, DDPG and TQC are aliases of these classes, so the zip records them.
# PPO and A2C share ActorCriticPolicy and DDPG shares TD3Policy, so the family cannot tell them
# apart, which does not matter for inference.
POLICY_FAMILIES: dict[tuple[str, str], str] = {
    ("stable_baselines3.common.policies", "ActorCriticPolicy"): "ppo",
    ("stable_baselines3.sac.policies", "SACPolicy"): "sac",
    ("stable_baselines3.td3.policies", "TD3Policy"): "td3",
    ("sb3_contrib.tqc.policies", "TQCPolicy"): "tqc",
}

ACTIVATIONS: dict[str, type[th.nn.Module]] = {
    name: getattr(th.nn, name)
    for name in ("Tanh", "ReLU", "ELU", "LeakyReLU", "SiLU", "GELU", "Sigmoid", "SELU", "Softplus", "Mish")
}

# SB3 writes a class that JSON cannot hold as its str(), e.g. "<class 'torch.nn.modules.activation.Tanh'>".
_CLASS_REPR = re.compile(r"^<class '(?P<path>[\w.]+)'>$")
_INIT_REPR = re.compile(r"^<function (?P<name>\w+)\.__init__ at 0x[0-9a-f]+>$")

FLATTEN_EXTRACTOR = "stable_baselines3.common.torch_layers.FlattenExtractor"

# Optimizer settings are ignored because the rebuilt policy is only used for inference.
IGNORED_POLICY_KWARGS = frozenset({"optimizer_class", "optimizer_kwargs"})

_SHARED_KWARGS = {"net_arch", "activation_fn", "share_features_extractor", "normalize_images"}
_SAC_KWARGS = {"use_sde", "log_std_init", "use_expln", "clip_mean", "n_critics"}

# Constructor kwargs with plain values, per family, from the signatures of ActorCriticPolicy,
# SACPolicy, TD3Policy (SB3 2.9) and TQCPolicy (sb3-contrib 2.9). use_sde is no policy kwarg for
# PPO because the algorithm passes its own use_sde to the policy.
FAMILY_KWARGS: dict[str, frozenset[str]] = {
    "ppo": frozenset(_SHARED_KWARGS | {"ortho_init", "log_std_init", "full_std", "use_expln", "squash_output"}),
    "sac": frozenset(_SHARED_KWARGS | _SAC_KWARGS),
    "td3": frozenset(_SHARED_KWARGS | {"n_critics"}),
    "tqc": frozenset(_SHARED_KWARGS | _SAC_KWARGS | {"n_quantiles"}),
}


class UnsafePickleError(ValueError):
    """A pickle references a global outside the safe loader's allow-list."""


@dataclass
class SavedModel:
    """Policy family, kwargs, recorded spaces and weights of an SB3 model zip, read by :func:`read_model_zip`."""

    path: Path
    family: str
    """``"ppo"`` (also A2C), ``"sac"``, ``"td3"`` (also DDPG) or ``"tqc"``."""
    policy_class_name: str
    policy_kwargs: dict[str, Any]
    """Constructor kwargs for the policy class, with ``activation_fn`` as a ``torch.nn`` class."""
    observation_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    observation_space_type: str
    """Class name of the recorded observation space, e.g. ``"Box"``."""
    action_space_type: str
    use_sde: bool
    state_dict: dict[str, th.Tensor]
    sb3_version: str | None = None
    ignored_policy_kwargs: tuple[str, ...] = ()


@dataclass
class NormalizationStats:
    """Statistics and settings of an SB3 ``VecNormalize``, read by :func:`read_vecnormalize`."""

    obs_mean: np.ndarray | None
    """Mean of the observations, or ``None`` when ``norm_obs`` is false and the file has no
    ``obs_rms``, as VecNormalize of SB3 2.9 writes it."""
    obs_var: np.ndarray | None
    obs_count: float | None
    clip_obs: float
    clip_reward: float
    epsilon: float
    gamma: float
    norm_obs: bool
    norm_reward: bool
    return_var: float
    """Variance of the discounted return (``ret_rms.var``). With ``norm_reward``, VecNormalize divides rewards
    by ``sqrt(return_var + epsilon)``."""


@dataclass
class ZooRun:
    """Paths and settings of an RL Baselines3 Zoo run folder."""

    folder: Path
    env_id: str
    model_path: Path
    config_path: Path
    vecnormalize_path: Path | None
    args_path: Path | None
    hyperparameters: dict[str, Any]
    algo: str | None = None
    """The ``algo`` entry of ``args.yml``, or ``None`` when that file is missing or unreadable."""
    normalize: Any = False
    """The ``normalize`` entry of ``config.yml``: a bool, a dict of VecNormalize kwargs, or the Python
    expression string of one, which RL Zoo evaluates and this module does not."""
    env_wrapper: Any = None
    """The ``env_wrapper`` entry of ``config.yml``, which the caller does not apply."""
    args: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- model zip


def read_model_zip(path: str | Path) -> SavedModel:
    """
    Read an SB3 model zip without running pickled code.

    :param path: a zip written by ``model.save`` of PPO, A2C, SAC, TD3, DDPG or TQC with an MLP policy
    :return: the policy family, kwargs, recorded spaces and weights
    :raises ValueError: when the zip lacks an entry, or records a policy, activation or features
        extractor that the safe path cannot rebuild
    """
    path = Path(path)
    data, state_dict, sb3_version = _read_zip_members(path)

    family, class_name = _policy_family(path, data)
    use_sde = data.get("use_sde", False)
    if not isinstance(use_sde, bool):
        raise ValueError(f"{path}: use_sde is {use_sde!r} in the data JSON, expected true or false")

    policy_kwargs, ignored = _read_policy_kwargs(path, data.get("policy_kwargs", {}), family)
    # PPO and A2C pass their use_sde to ActorCriticPolicy themselves. SAC and TQC store it in
    # policy_kwargs, and the top-level entry is the fallback for a zip whose policy_kwargs lacks it.
    if family == "ppo":
        policy_kwargs["use_sde"] = use_sde
    elif family in ("sac", "tqc"):
        policy_kwargs.setdefault("use_sde", use_sde)

    observation_type, observation_shape = _recorded_space(path, data, "observation_space")
    action_type, action_shape = _recorded_space(path, data, "action_space")

    return SavedModel(
        path=path,
        family=family,
        policy_class_name=class_name,
        policy_kwargs=policy_kwargs,
        observation_shape=observation_shape,
        action_shape=action_shape,
        observation_space_type=observation_type,
        action_space_type=action_type,
        use_sde=use_sde,
        state_dict=state_dict,
        sb3_version=sb3_version,
        ignored_policy_kwargs=ignored,
    )


def _read_zip_members(path: Path) -> tuple[dict[str, Any], dict[str, th.Tensor], str | None]:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"cannot read {path} as an SB3 model zip: {error}") from error

    with archive:
        names = set(archive.namelist())
        for member in ("data", "policy.pth"):
            if member not in names:
                raise ValueError(f"{path} is not an SB3 model zip: it has no '{member}' entry")

        try:
            data = json.loads(archive.read("data"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: the 'data' entry is not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the 'data' entry is a JSON {type(data).__name__}, expected an object")

        # weights_only=True restricts torch's unpickler to tensors and plain containers.
        buffer = io.BytesIO(archive.read("policy.pth"))
        try:
            state_dict = th.load(buffer, weights_only=True, map_location="cpu")
        except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
            raise ValueError(
                f"{path}: torch.load(weights_only=True) rejected policy.pth: {error}. {TRUST_HINT}."
            ) from error

        sb3_version = None
        if "_stable_baselines3_version" in names:
            sb3_version = archive.read("_stable_baselines3_version").decode("utf-8", "replace").strip()

    if not isinstance(state_dict, dict) or not all(isinstance(value, th.Tensor) for value in state_dict.values()):
        raise ValueError(f"{path}: policy.pth does not contain a state dict of tensors")
    return data, state_dict, sb3_version


def _policy_family(path: Path, data: dict[str, Any]) -> tuple[str, str]:
    """Return the family and class name of the recorded ``policy_class``."""
    recorded = data.get("policy_class")
    if not isinstance(recorded, dict):
        raise ValueError(f"{path}: the data JSON has no policy_class entry with readable attributes")

    # A class's __dict__ contains no __name__, so the name comes from the repr of its own __init__.
    # Subclasses such as CnnPolicy or MultiInputPolicy define __init__, so they show their own name.
    module = recorded.get("__module__")
    match = _INIT_REPR.match(str(recorded.get("__init__", "")))
    class_name = match["name"] if match else None

    family = POLICY_FAMILIES.get((module, class_name))
    if family is None:
        supported = ", ".join(f"{module}.{name}" for module, name in POLICY_FAMILIES)
        raise ValueError(
            f"{path}: policy class {module}.{class_name} is not supported by the safe loader "
            f"(supported: {supported}). {TRUST_HINT}."
        )
    return family, class_name


def _read_policy_kwargs(path: Path, recorded: Any, family: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Return the constructor kwargs of ``policy_kwargs`` and the names of those ignored."""
    if not isinstance(recorded, dict):
        raise ValueError(f"{path}: policy_kwargs is {recorded!r} in the data JSON, expected an object")

    # A dict that JSON cannot hold is pickled, and SB3 writes each of its items next to the pickle:
    # JSON values as they are, other values as their str().
    items = {key: value for key, value in recorded.items() if key not in (":type:", ":serialized:")}

    kwargs: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in items.items():
        if key in IGNORED_POLICY_KWARGS:
            ignored.append(key)
        elif key == "features_extractor_class":
            _check_features_extractor(path, value)
        elif key == "features_extractor_kwargs":
            # FlattenExtractor takes no kwargs, so anything recorded here belongs to another extractor.
            if value not in ({}, None):
                raise ValueError(
                    f"{path}: policy_kwargs features_extractor_kwargs is {value!r}, but FlattenExtractor, "
                    f"the only features extractor of the safe loader, takes none. {TRUST_HINT}."
                )
        elif key == "activation_fn":
            kwargs[key] = _parse_activation(path, value)
        elif key in FAMILY_KWARGS[family]:
            kwargs[key] = _PLAIN_KWARG_PARSERS[key](path, key, value)
        else:
            raise ValueError(
                f"{path}: policy_kwargs {key}={value!r} is not a kwarg that the safe loader rebuilds "
                f"for a {family} policy. {TRUST_HINT}."
            )
    return kwargs, tuple(ignored)


def _check_features_extractor(path: Path, value: Any) -> None:
    match = _CLASS_REPR.match(value) if isinstance(value, str) else None
    if match is None or match["path"] != FLATTEN_EXTRACTOR:
        raise ValueError(
            f"{path}: features_extractor_class {value!r} is not supported by the safe loader, "
            f"which rebuilds only {FLATTEN_EXTRACTOR}. {TRUST_HINT}."
        )


def _parse_activation(path: Path, value: Any) -> type[th.nn.Module]:
    """Map a recorded activation such as ``"<class 'torch.nn.modules.activation.ReLU'>"`` to its class."""
    match = _CLASS_REPR.match(value) if isinstance(value, str) else None
    if match is not None:
        module, _, name = match["path"].rpartition(".")
        # Match the module prefix, not the full path, because torch may move classes between
        # its submodules across versions.
        if module.startswith("torch.nn") and name in ACTIVATIONS:
            return ACTIVATIONS[name]
    raise ValueError(
        f"{path}: policy_kwargs activation_fn {value!r} is not one of the activations that the safe "
        f"loader rebuilds ({', '.join(ACTIVATIONS)}). {TRUST_HINT}."
    )


def _parse_bool(path: Path, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{path}: policy_kwargs {key} is {value!r}, expected true or false")
    return value


def _parse_float(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: policy_kwargs {key} is {value!r}, expected a number")
    return float(value)


def _parse_positive_int(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{path}: policy_kwargs {key} is {value!r}, expected a positive integer")
    return value


def _parse_net_arch(path: Path, key: str, value: Any) -> list[int] | dict[str, list[int]]:
    """Accept the two forms of SB3 2.x: a list of layer sizes, or a dict of them per network."""

    def is_layer_list(layers: Any) -> bool:
        return isinstance(layers, list) and all(
            isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in layers
        )

    if is_layer_list(value):
        return list(value)
    if isinstance(value, dict) and set(value) <= {"pi", "vf", "qf"} and all(map(is_layer_list, value.values())):
        return {name: list(layers) for name, layers in value.items()}
    raise ValueError(
        f"{path}: policy_kwargs {key} is {value!r}, expected a list of layer sizes "
        "or a dict of them with keys pi, vf and qf"
    )


_PLAIN_KWARG_PARSERS: dict[str, Callable[[Path, str, Any], Any]] = {
    "net_arch": _parse_net_arch,
    "ortho_init": _parse_bool,
    "use_sde": _parse_bool,
    "full_std": _parse_bool,
    "use_expln": _parse_bool,
    "squash_output": _parse_bool,
    "share_features_extractor": _parse_bool,
    "normalize_images": _parse_bool,
    "log_std_init": _parse_float,
    "clip_mean": _parse_float,
    "n_critics": _parse_positive_int,
    "n_quantiles": _parse_positive_int,
}


def _recorded_space(path: Path, data: dict[str, Any], key: str) -> tuple[str, tuple[int, ...]]:
    """Return the class name and shape that the JSON records for a space."""
    recorded = data.get(key)
    if not isinstance(recorded, dict):
        raise ValueError(f"{path}: the data JSON has no {key} entry with readable attributes")

    match = _CLASS_REPR.match(str(recorded.get(":type:", "")))
    if match is None:
        raise ValueError(f"{path}: {key} has type {recorded.get(':type:')!r}, expected a class repr")
    space_type = match["path"].rpartition(".")[2]

    shape = recorded.get("_shape")
    if not isinstance(shape, list) or not all(isinstance(size, int) and size >= 0 for size in shape):
        raise ValueError(f"{path}: {key} records _shape {shape!r}, expected a list of sizes")
    return space_type, tuple(shape)


# --------------------------------------------------------------------------- policy


def build_policy(saved: SavedModel, observation_space: spaces.Space, action_space: spaces.Space) -> BasePolicy:
    """
    Rebuild the SB3 policy of a :class:`SavedModel` and load its weights.

    The spaces come from the environment, not from the pickles in the zip.

    :param saved: the output of :func:`read_model_zip`
    :param observation_space: the environment's observation space
    :param action_space: the environment's action space, whose bounds ``predict`` rescales to
    :return: the policy in eval mode, on the CPU
    :raises ValueError: when a space's type or shape differs from the recorded one, or when the
        weights do not fit the rebuilt policy
    """
    _check_space(saved, "observation", saved.observation_space_type, saved.observation_shape, observation_space)
    _check_space(saved, "action", saved.action_space_type, saved.action_shape, action_space)

    policy_class = policy_class_for(saved.family)
    # Kwargs absent from the JSON take the installed constructor's defaults, as in SB3's own load.
    policy = policy_class(observation_space, action_space, _constant_learning_rate, **saved.policy_kwargs)

    try:
        policy.load_state_dict(saved.state_dict, strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"{saved.path}: policy.pth does not fit the {saved.policy_class_name} rebuilt from the data JSON: {error}"
        ) from error

    policy.eval()
    return policy


def policy_class_for(family: str) -> type[BasePolicy]:
    """Return the SB3 policy class of a family, importing TQC's from sb3-contrib only when needed."""
    if family == "ppo":
        return ActorCriticPolicy
    if family == "sac":
        return SACPolicy
    if family == "td3":
        return TD3Policy
    if family == "tqc":
        try:
            from sb3_contrib.tqc.policies import TQCPolicy
        except ImportError as error:
            raise ImportError(
                "this teacher is a TQC model, whose policy class comes from sb3-contrib: "
                "install it with 'pip install sb3-contrib'"
            ) from error
        return TQCPolicy
    raise ValueError(f"unknown policy family {family!r}, expected one of ppo, sac, td3, tqc")


def _constant_learning_rate(progress_remaining: float) -> float:
    # The constructor builds an optimizer from this schedule, which inference never steps.
    return 0.0


def _check_space(
    saved: SavedModel, name: str, recorded_type: str, recorded_shape: tuple[int, ...], space: spaces.Space
) -> None:
    if type(space).__name__ != recorded_type:
        raise ValueError(
            f"{saved.path}: the teacher was trained with a {recorded_type} {name} space, "
            f"but the environment has a {type(space).__name__}"
        )
    if tuple(space.shape) != recorded_shape:
        raise ValueError(
            f"{saved.path}: the teacher was trained with {name} shape {recorded_shape}, "
            f"but the environment has {name} shape {tuple(space.shape)}"
        )
    # NOTE: the JSON records Box bounds only as str() of arrays, so differing bounds are not
    # detected. predict() rescales actions to the bounds of the environment's action space.


# --------------------------------------------------------------------------- vecnormalize.pkl


class PickledObject:
    """
    Inert stand-in for an allowed SB3, gymnasium or numpy.random object in a pickle.

    It stores the constructor arguments and the state that unpickling passes, and runs no code of
    the class it replaces. :attr:`global_name` names that class.
    """

    global_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "PickledObject":
        instance = super().__new__(cls)
        instance.arguments = args
        instance.state = None
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # __new__ already stored the arguments, and object.__init__ would reject them.
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"PickledObject({self.global_name})"


def _numpy_module(name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core, and pickles name whichever the writer used.
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{name}")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    multiarray = _numpy_module("multiarray")
    numeric = _numpy_module("numeric")
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        # _reconstruct and scalar rebuild arrays and scalars for pickle protocols up to 4, and
        # _frombuffer rebuilds arrays for protocol 5 (the default from Python 3.14 on).
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


# Globals of a vecnormalize.pkl that become PickledObject stand-ins. The SB3, Box and numpy.random
# names are those that pickletools.dis lists for files written by VecNormalize.save (SB3 2.9,
# numpy 2.4). The other gymnasium spaces and bit generators take the same places in the pickle for
# envs with other space types or generators.
STAND_IN_GLOBALS: tuple[tuple[str, str], ...] = (
    ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"),
    ("stable_baselines3.common.running_mean_std", "RunningMeanStd"),
    ("gymnasium.spaces.box", "Box"),
    ("gymnasium.spaces.discrete", "Discrete"),
    ("gymnasium.spaces.multi_discrete", "MultiDiscrete"),
    ("gymnasium.spaces.multi_binary", "MultiBinary"),
    ("gymnasium.spaces.dict", "Dict"),
    ("gymnasium.spaces.tuple", "Tuple"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._pcg64", "PCG64DXSM"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._philox", "Philox"),
    ("numpy.random._sfc64", "SFC64"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
)

_VECNORMALIZE = "stable_baselines3.common.vec_env.vec_normalize.VecNormalize"
_RUNNING_MEAN_STD = "stable_baselines3.common.running_mean_std.RunningMeanStd"


def _stand_in_class(module: str, name: str) -> type[PickledObject]:
    return type(name, (PickledObject,), {"global_name": f"{module}.{name}"})


class RestrictedUnpickler(pickle.Unpickler):
    """
    Unpickler that resolves only allow-listed globals.

    numpy's array, dtype and scalar reconstruction functions resolve to numpy itself, the names
    in :data:`STAND_IN_GLOBALS` resolve to :class:`PickledObject` stand-ins, and every other global
    raises :class:`UnsafePickleError` before anything is called.
    """

    _allowed: ClassVar[dict[tuple[str, str], Any]] = {
        **_numpy_globals(),
        **{key: _stand_in_class(*key) for key in STAND_IN_GLOBALS},
    }

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = self._allowed.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"{self.source} references the global {module}.{name}, which the safe loader does not "
                f"allow because unpickling it could run code. {TRUST_HINT}."
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source} contains a persistent id {pid!r}, which the safe loader does not load")


def read_vecnormalize(path: str | Path) -> NormalizationStats:
    """
    Read the statistics of a ``vecnormalize.pkl`` written by SB3's ``VecNormalize.save``.

    :param path: the pickle file
    :return: the observation and return statistics with the normalization settings
    :raises UnsafePickleError: when the pickle references a global outside the allow-list
    :raises ValueError: when the file is not a pickled ``VecNormalize`` with a Box observation space
    """
    path = Path(path)
    with path.open("rb") as file:
        try:
            root = RestrictedUnpickler(file, source=str(path)).load()
        except (pickle.UnpicklingError, EOFError) as error:
            raise ValueError(f"cannot read {path} as a pickle: {error}") from error

    state = _stand_in_state(path, root, _VECNORMALIZE, "the file")
    norm_obs = _flag(path, _state_entry(path, state, "norm_obs"), "norm_obs")
    obs_mean, obs_var, obs_count = _observation_statistics(path, state)
    if norm_obs and obs_mean is None:
        raise ValueError(f"{path}: the pickled VecNormalize normalizes observations but has no obs_rms attribute")
    ret_stats = _stand_in_state(path, _state_entry(path, state, "ret_rms"), _RUNNING_MEAN_STD, "ret_rms")

    return NormalizationStats(
        obs_mean=obs_mean,
        obs_var=obs_var,
        obs_count=obs_count,
        clip_obs=_number(path, _state_entry(path, state, "clip_obs"), "clip_obs"),
        clip_reward=_number(path, _state_entry(path, state, "clip_reward"), "clip_reward"),
        epsilon=_number(path, _state_entry(path, state, "epsilon"), "epsilon"),
        gamma=_number(path, _state_entry(path, state, "gamma"), "gamma"),
        norm_obs=norm_obs,
        norm_reward=_flag(path, _state_entry(path, state, "norm_reward"), "norm_reward"),
        return_var=_number(path, _state_entry(path, ret_stats, "var"), "ret_rms.var"),
    )


def _observation_statistics(
    path: Path, state: dict[str, Any]
) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:
    """Return the mean, variance and count of ``obs_rms``, each ``None`` when the file has no ``obs_rms``."""
    # VecNormalize (SB3 2.9 checked) creates obs_rms only when norm_obs is true.
    if "obs_rms" not in state:
        return None, None, None

    obs_rms = state["obs_rms"]
    if isinstance(obs_rms, dict):
        raise ValueError(
            f"{path}: the statistics are per key of a Dict observation space, which the safe loader "
            f"does not support. {TRUST_HINT}."
        )
    obs_stats = _stand_in_state(path, obs_rms, _RUNNING_MEAN_STD, "obs_rms")

    mean = _float_array(path, _state_entry(path, obs_stats, "mean"), "obs_rms.mean")
    var = _float_array(path, _state_entry(path, obs_stats, "var"), "obs_rms.var")
    if mean.shape != var.shape:
        raise ValueError(f"{path}: obs_rms.mean has shape {mean.shape} but obs_rms.var has shape {var.shape}")
    count = _number(path, _state_entry(path, obs_stats, "count"), "obs_rms.count")
    return mean, var, count


def _stand_in_state(path: Path, value: Any, global_name: str, location: str) -> dict[str, Any]:
    """Return the attribute dict that a pickled ``global_name`` object carried."""
    if not isinstance(value, PickledObject) or value.global_name != global_name:
        found = value.global_name if isinstance(value, PickledObject) else type(value).__name__
        raise ValueError(f"{path}: {location} is a pickled {found}, expected a {global_name}")
    if not isinstance(value.state, dict):
        raise ValueError(f"{path}: the pickled {global_name} in {location} carries no attribute dict")
    return value.state


def _state_entry(path: Path, state: dict[str, Any], key: str) -> Any:
    if key not in state:
        raise ValueError(
            f"{path}: the pickled object has no {key!r} attribute, so the file is not a VecNormalize saved by SB3"
        )
    return state[key]


def _float_array(path: Path, value: Any, attribute: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
        raise ValueError(f"{path}: {attribute} is {type(value).__name__}, expected a float array")
    return value.astype(np.float64)


def _number(path: Path, value: Any, attribute: str) -> float:
    # ret_rms stores numpy scalars or 0-d arrays, depending on whether it was ever updated.
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{path}: {attribute} is {value!r}, expected a number")
    return float(value)


def _flag(path: Path, value: Any, attribute: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{path}: {attribute} is {value!r}, expected True or False")
    return bool(value)


# --------------------------------------------------------------------------- RL Zoo run folder


class ZooConfigLoader(yaml.SafeLoader):
    """
    ``yaml.SafeLoader`` that also reads the OrderedDict that RL Zoo writes.

    RL Zoo saves ``config.yml`` and ``args.yml`` with ``yaml.dump`` of an ``OrderedDict``, which PyYAML
    writes as ``!!python/object/apply:collections.OrderedDict`` over a list of ``[key, value]``
    pairs. That one tag becomes a plain dict, and every other Python tag stays an error.
    """


def _construct_ordered_dict(loader: ZooConfigLoader, node: yaml.Node) -> dict[Any, Any]:
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, "expected the OrderedDict arguments as a sequence", node.start_mark
        )
    arguments = loader.construct_sequence(node, deep=True)
    if len(arguments) != 1 or not isinstance(arguments[0], list):
        raise yaml.constructor.ConstructorError(
            None, None, "expected one argument, the list of [key, value] pairs", node.start_mark
        )

    result: dict[Any, Any] = {}
    for pair in arguments[0]:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], (str, int, float, bool)):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a [key, value] pair, found {pair!r}", node.start_mark
            )
        result[pair[0]] = pair[1]
    return result


ZooConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _construct_ordered_dict
)


def read_zoo_yaml(path: Path) -> dict[str, Any]:
    """Read an RL Zoo ``config.yml`` or ``args.yml`` as a dict, with :class:`ZooConfigLoader`."""
    try:
        # yaml.load with a SafeLoader subclass constructs only plain values and the OrderedDict tag.
        values = yaml.load(path.read_text(), Loader=ZooConfigLoader)
    except yaml.YAMLError as error:
        raise ValueError(
            f"cannot read {path}: {error}. The safe YAML loader reads plain values and RL Zoo's "
            "OrderedDict only, so remove other Python tags from the file."
        ) from error
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} contains a YAML {type(values).__name__}, expected a mapping")
    return values


def find_zoo_run(folder: str | Path, env_id: str | None = None) -> ZooRun | None:
    """
    Detect the layout of an RL Baselines3 Zoo run folder.

    The layout is ``<folder>/<ENV_ID>.zip`` (or ``best_model.zip`` when that file is missing),
    ``<folder>/<ENV_ID>/config.yml`` and, optionally, ``<folder>/<ENV_ID>/args.yml`` and
    ``<folder>/<ENV_ID>/vecnormalize.pkl``. RL Zoo writes ``<ENV_ID>`` with each ``/`` of the env
    id replaced by ``-``.

    :param folder: the run folder, e.g. ``logs/tqc/Hopper-v5_1``
    :param env_id: the env id to look for, or ``None`` to detect it from the subfolders
    :return: the run, or ``None`` when the folder does not have that layout
    :raises ValueError: when ``env_id`` is ``None`` and several env ids match, or when a YAML file
        cannot be read safely
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None

    if env_id is not None:
        names = [env_id.replace("/", "-")]
    else:
        names = sorted(child.name for child in folder.iterdir() if (child / "config.yml").is_file())

    runs = [run for run in (_zoo_run_for(folder, name, env_id) for name in names) if run is not None]
    if len(runs) > 1:
        found = ", ".join(run.env_id for run in runs)
        raise ValueError(f"{folder} contains RL Zoo runs for several env ids ({found}). Pass the env id to choose one.")
    return runs[0] if runs else None


def _zoo_run_for(folder: Path, name: str, env_id: str | None) -> ZooRun | None:
    params_dir = folder / name
    config_path = params_dir / "config.yml"
    if not config_path.is_file():
        return None

    model_path = folder / f"{name}.zip"
    if not model_path.is_file():
        model_path = folder / "best_model.zip"
        if not model_path.is_file():
            return None

    args_path = params_dir / "args.yml"
    args = _read_zoo_args(args_path) if args_path.is_file() else {}
    vecnormalize_path = params_dir / "vecnormalize.pkl"
    hyperparameters = read_zoo_yaml(config_path)

    # args.yml contains the id that gym.make takes, while the folder name has '/' replaced by '-'.
    recorded_env = args.get("env")
    if env_id is None:
        env_id = recorded_env if isinstance(recorded_env, str) else name
    algo = args.get("algo")

    # NOTE: frame_stack, vec_env_wrapper and callback entries are returned only inside
    # hyperparameters, and policy_kwargs stays the Python expression string that RL Zoo evaluates.
    return ZooRun(
        folder=folder,
        env_id=env_id,
        model_path=model_path,
        config_path=config_path,
        vecnormalize_path=vecnormalize_path if vecnormalize_path.is_file() else None,
        args_path=args_path if args_path.is_file() else None,
        hyperparameters=hyperparameters,
        algo=algo if isinstance(algo, str) else None,
        normalize=hyperparameters.get("normalize", False),
        env_wrapper=hyperparameters.get("env_wrapper"),
        args=args,
    )


def _read_zoo_args(path: Path) -> dict[str, Any]:
    # args.yml only names the algorithm and env id, so a file that the safe loader rejects (for
    # example one with a Python tuple tag from --hyperparams) does not hide the run.
    try:
        return read_zoo_yaml(path)
    except ValueError as error:
        logger.warning("ignored %s, so the run has no algo or recorded env id: %s", path, error)
        return {}
