"""One round of checkpoint saves and loads in a source tree's own interpreter, for perf/trees.py.

    PYTHONPATH=TREE python perf/tree_ckpt.py --root ROOT --bucket B --prefix P --mib 512 --gateway-pid PID

perf/trees.py runs this once per tree and round, with the environment that makes ``import
aif_gateway`` load TREE's code (and AWS_* pointing at TREE's gateway). It builds the seeded
model-like state dict of perf/statedict.py and times, in this order:

- save-direct: ``ckpt.save(sd, "s3://B/P/direct")`` with AIF_GATEWAY_ROOT=ROOT, so the objects go
  straight into the bucket's directory;
- load-direct: ``ckpt.load`` of it into a preallocated state dict;
- save-s3, load-s3: the same to ``s3://B/P/s3`` with AIF_GATEWAY_ROOT unset, so over S3 to the
  gateway (AWS_ENDPOINT_URL and the keys come from the environment).

Only ``ckpt.save(state_dict, uri)`` and ``ckpt.load(state_dict, uri)`` are called, with the doors
chosen through the environment, so that trees which rename ckpt's keyword options or modules still
run the same program. A tiny state dict goes through both first, untimed (imports, connections).
Every load is compared with the original, tensor by tensor, outside the timed sections. The gateway's
CPU is counted over each timed section: a direct save or load that made the gateway work was not
direct, and stops the run. Prints one JSON line: where aif_gateway came from, and per section the
seconds, this process's CPU seconds and the gateway's. The caller deletes the checkpoints (over S3).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from servers import group_cpu_seconds
from statedict import StateDict, check_equal, empty_like_state, model_state, state_bytes

MiB = 1 << 20
WARMUP_BYTES = 8 * MiB
ROOT_ENV = "AIF_GATEWAY_ROOT"  # ckpt's documented way to say where the gateway's root is mounted
# A direct save or load that costs the gateway more than this was not direct (an idle gateway: ~0).
DIRECT_GATEWAY_CPU_LIMIT_S = 0.05

warnings.filterwarnings("ignore", message="torch.distributed is disabled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the gateway's root directory")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True, help="every checkpoint goes under s3://BUCKET/PREFIX/")
    parser.add_argument("--mib", type=float, required=True, help="state dict size in MiB")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--gateway-pid", type=int, required=True, help="the gateway's process group")
    args = parser.parse_args()

    import aif_gateway
    from aif_gateway import ckpt

    base = f"s3://{args.bucket}/{args.prefix}"

    def door(direct: bool) -> None:
        if direct:
            os.environ[ROOT_ENV] = args.root
        else:
            os.environ.pop(ROOT_ENV, None)

    def timed(label: str, call: Callable[[], Any]) -> dict[str, float]:
        gc.collect()
        gateway_before, cpu_before = group_cpu_seconds(args.gateway_pid), time.process_time()
        started = time.perf_counter()
        call()
        seconds = time.perf_counter() - started
        section = {
            "seconds": seconds,
            "cpu_s": time.process_time() - cpu_before,
            "gateway_cpu_s": group_cpu_seconds(args.gateway_pid) - gateway_before,
        }
        if label.endswith("direct") and section["gateway_cpu_s"] > DIRECT_GATEWAY_CPU_LIMIT_S:
            raise SystemExit(
                f"tree_ckpt: {label} cost the gateway {section['gateway_cpu_s']:.2f} CPU-s: "
                f"the checkpoint did not go straight to {args.root} ({ROOT_ENV} not honoured?)"
            )
        return section

    def save_and_load(state: StateDict, uri: str, results: dict[str, Any] | None = None, how: str = "") -> None:
        """Save, then load into a preallocated state dict and compare; timed when ``results`` is given."""
        save = lambda: ckpt.save(state, uri)  # noqa: E731
        target = empty_like_state(state)
        load = lambda: ckpt.load(target, uri)  # noqa: E731
        if results is None:
            save()
            load()
        else:
            results[f"save-{how}"] = timed(f"save-{how}", save)
            results[f"load-{how}"] = timed(f"load-{how}", load)
        check_equal(target, state, f"load of {uri}")

    warm = model_state(WARMUP_BYTES, args.seed + 1)
    for direct in (True, False):
        door(direct)
        save_and_load(warm, f"{base}/warm-{'direct' if direct else 's3'}")
    del warm

    state = model_state(int(args.mib * MiB), args.seed)
    results: dict[str, Any] = {"aif_gateway": aif_gateway.__file__, "bytes": state_bytes(state)}
    for direct in (True, False):
        door(direct)
        how = "direct" if direct else "s3"
        save_and_load(state, f"{base}/{how}", results, how)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
