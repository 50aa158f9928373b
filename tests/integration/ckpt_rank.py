"""One rank of a multi-process checkpoint test: ``python ckpt_rank.py save|load DEST`` with RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT set (the test starts every rank), plus the target options as
JSON in AIF_CKPT_OPTIONS. The model: a 2-D tensor sharded by rows over the ranks (DTensor on a
CPU mesh, gloo), a replicated bias, and per-rank values. Prints one JSON line of results."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

from aif_gateway import ckpt

ROWS, COLS = 1024, 96


def full_weight() -> torch.Tensor:
    return torch.arange(ROWS * COLS, dtype=torch.float32).reshape(ROWS, COLS) / 7


def main() -> None:
    action, dest = sys.argv[1], sys.argv[2]
    options = json.loads(os.environ.get("AIF_CKPT_OPTIONS", "{}"))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    if action == "save":
        state = {
            "weight": distribute_tensor(full_weight(), mesh, [Shard(0)]),
            "bias": torch.linspace(0, 1, COLS).to(torch.bfloat16),
            "step": 42,
        }
        stats = ckpt.save(state, dest, **options)
        out = {"rank": rank, "bytes": stats.bytes, "files": stats.files, "via": stats.via}
    else:
        state = {
            "weight": distribute_tensor(torch.zeros(ROWS, COLS), mesh, [Shard(0)]),
            "bias": torch.zeros(COLS, dtype=torch.bfloat16),
            "step": 0,
        }
        ckpt.load(state, dest, verify=True, **options)
        local = state["weight"].to_local()
        rows = ROWS // world
        expected = full_weight()[rank * rows : (rank + 1) * rows]
        out = {
            "rank": rank,
            "weight_ok": bool(torch.equal(local, expected)),
            "bias_ok": bool(torch.equal(state["bias"], torch.linspace(0, 1, COLS).to(torch.bfloat16))),
            "step": state["step"],
        }
    dist.barrier()
    dist.destroy_process_group()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
