"""
Run an exported ONNX policy with onnxruntime and numpy only.

This module imports neither torch nor Stable-Baselines3, so a robot or a service can run a
policy written by ``rl-advkd export`` with these two dependencies::

    from rl_advkd.deploy import OnnxPolicy

    policy = OnnxPolicy("agents/Hopper-v5/student/student.onnx")
    action = policy.predict(observation)  # raw observation in, clipped action out
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

# The key under which ``rl_advkd.export`` stores its JSON metadata; repeated here because
# importing rl_advkd.export would import torch.
METADATA_KEY = "rl_advkd"


class OnnxPolicy:
    """
    An exported policy: raw observations in, the actions the env receives out.

    :param path: an ONNX file written by ``rl-advkd export``
    :param intra_op_num_threads: threads onnxruntime uses inside one operator; the default 1
        leaves the other cores to the simulator and other processes
    :param inter_op_num_threads: threads onnxruntime uses to run operators in parallel
    :param providers: onnxruntime execution providers, in order of preference
    """

    def __init__(
        self,
        path: str | Path,
        intra_op_num_threads: int = 1,
        inter_op_num_threads: int = 1,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"ONNX policy not found: {path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = inter_op_num_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
        except (Fail, InvalidGraph, InvalidProtobuf) as error:
            raise ValueError(f"cannot load ONNX policy {path}: {error}") from error

        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise ValueError(f"{path} has no '{METADATA_KEY}' metadata; export the policy with 'rl-advkd export'")
        self.metadata: dict[str, Any] = json.loads(text)
        self.observation_shape = tuple(self.metadata["observation_space"]["shape"])
        self.action_shape = tuple(self.metadata["action_space"]["shape"])
        self._input_name = self.session.get_inputs()[0].name
        self._output_names = [self.session.get_outputs()[0].name]

    @property
    def env_id(self) -> str:
        """The Gymnasium id of the task the policy was trained on."""
        return self.metadata["env_id"]

    @property
    def epsilon(self) -> float | None:
        """The ℓ∞ budget, in normalized units, that a student was distilled with (``None`` for a teacher)."""
        return self.metadata.get("epsilon")

    @property
    def action_low(self) -> np.ndarray:
        return _float_array(self.metadata["action_space"]["low"]).reshape(self.action_shape)

    @property
    def action_high(self) -> np.ndarray:
        return _float_array(self.metadata["action_space"]["high"]).reshape(self.action_shape)

    @property
    def observation_scale(self) -> np.ndarray:
        """``sqrt(var + epsilon)`` of the frozen normalization: one normalized unit in raw units, per dimension."""
        normalization = self.metadata["normalization"]
        return np.sqrt(np.asarray(normalization["var"]) + normalization["epsilon"]).reshape(self.observation_shape)

    def predict(self, observation: np.ndarray) -> np.ndarray:
        """
        Return the deterministic action for one raw observation or a batch of them.

        :param observation: float32 or float64 (float64 is cast to float32), of shape
            ``observation_shape`` or ``(batch, *observation_shape)``
        :return: float32 actions of shape ``action_shape`` or ``(batch, *action_shape)``
        :raise ValueError: for another dtype or shape; the message gives the expected and received ones
        """
        obs = np.asarray(observation)
        if obs.dtype == np.float64:
            obs = obs.astype(np.float32)
        elif obs.dtype != np.float32:
            raise ValueError(
                f"{self.env_id} policy expects float32 or float64 observations, got {obs.dtype}; "
                "cast with obs.astype(np.float32)"
            )

        single = obs.shape == self.observation_shape
        if single:
            obs = obs[np.newaxis]
        elif obs.shape[1:] != self.observation_shape:
            raise ValueError(
                f"{self.env_id} policy expects an observation of shape {self.observation_shape} or a batch of "
                f"shape (batch, {', '.join(map(str, self.observation_shape))}), got shape {obs.shape}"
            )

        # NOTE: at batch size 1 the fixed cost of session.run is most of the latency. On one core of
        # a 2-vCPU AMD EPYC VM, a graph that does nothing took about as long as a [64, 64] student,
        # about 10 µs (benchmarks/latency.json), so a smaller network barely shortens it. Batches amortize the cost.
        actions = self.session.run(self._output_names, {self._input_name: np.ascontiguousarray(obs)})[0]
        if len(self.action_shape) != 1:
            # The graph returns (batch, action_dim), so only a multi-dimensional Box needs the reshape.
            actions = actions.reshape((len(obs), *self.action_shape))
        return actions[0] if single else actions

    __call__ = predict


def _float_array(values: list) -> np.ndarray:
    # Infinite bounds are stored as the strings "inf" and "-inf", which float() reads.
    return np.array([float(value) for value in values], dtype=np.float32)
