"""The model-like state dict the checkpoint benchmarks save and load (perf/ckpt_bench.py, and
perf/tree_ckpt.py for perf/trees.py): built from a seed, so every program and every tree saves
the same bytes; and the checks that a load gave them back."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

HIDDEN = 4096  # columns of the large matrices and length of the layer-norm-like small tensors
SMALL_TENSORS = 400
SMALL_SHARE = 0.10

StateDict = dict[str, Any]


def model_state(total: int, seed: int) -> StateDict:
    """About ``total`` tensor bytes shaped like a model's: a few large matrices, many small ones."""
    rng = np.random.default_rng(seed)

    def normal(n: int) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal(n, dtype=np.float32))

    state: StateDict = {}
    large = int(total * (1 - SMALL_SHARE)) // 4
    for index, dtype in enumerate((torch.float32, torch.float32, torch.bfloat16, torch.bfloat16)):
        rows = max(1, large // (HIDDEN * dtype.itemsize))
        state[f"layers.{index}.mlp.weight"] = normal(rows * HIDDEN).to(dtype).reshape(rows, HIDDEN)
    # Small tensors of uneven sizes (0.25x to 2.25x their mean), as biases and norms are.
    mean = max(4, int(total * SMALL_SHARE) // SMALL_TENSORS // 4)
    for index in range(SMALL_TENSORS):
        state[f"blocks.{index}.norm"] = normal(max(1, int(mean * (0.25, 0.5, 1.0, 2.25)[index % 4])))
    for index in range(4):
        state[f"blocks.{index}.counter"] = torch.tensor(index * 1_000_003, dtype=torch.int64)
    state["step"] = 1000  # a non-tensor value: dcp writes it as a pickled blob
    return state


def tensors(state: StateDict) -> list[torch.Tensor]:
    return [v for v in state.values() if isinstance(v, torch.Tensor)]


def state_bytes(state: StateDict) -> int:
    return sum(t.nbytes for t in tensors(state))


def empty_like_state(state: StateDict) -> StateDict:
    """The state dict a training job loads into: same shapes, every page already touched."""
    return {k: torch.zeros_like(v) if isinstance(v, torch.Tensor) else 0 for k, v in state.items()}


def check_equal(got: StateDict, want: StateDict, label: str) -> None:
    if sorted(got) != sorted(want):
        raise AssertionError(f"{label}: keys differ: {sorted(set(got) ^ set(want))[:5]}")
    for key, value in want.items():
        other = got[key]
        if isinstance(value, torch.Tensor):
            if not (
                isinstance(other, torch.Tensor)
                and other.dtype == value.dtype
                and other.shape == value.shape
                and torch.equal(other, value)
            ):
                raise AssertionError(f"{label}: {key} differs from the original")
        elif other != value:
            raise AssertionError(f"{label}: {key} is {other!r}, expected {value!r}")
