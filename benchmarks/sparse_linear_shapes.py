"""Which `sparse_linear` kernel config suits each Llama-7B projection shape at batch 1 (issue 24): the default
config was tuned on 4096 -> 11008 (sparse_gemv.py); this sweeps the same candidates on the down projection
11008 -> 4096 and the square 4096 -> 4096, graph-replayed over weight copies larger than L2, at 0 % and 50 %.

    python benchmarks/sparse_linear_shapes.py --out benchmarks/results/sparse_linear_shapes.json   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_timing import bench_graph  # noqa: E402
from sparse_gemv import gemv_configs  # noqa: E402

from interp.kernels import magnitude_threshold, sparse_linear, to_column_major  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    res = {"gpu": torch.cuda.get_device_name(), "shapes": {}}
    for n_out, n_in in ((4096, 11008), (4096, 4096), (11008, 4096)):
        copies = max(2, math.ceil(3 * (64 << 20) / (n_out * n_in * 2)))
        ws = [torch.randn(n_out, n_in, device="cuda", dtype=torch.float16) / math.sqrt(n_in) for _ in range(copies)]
        cols = [to_column_major(w) for w in ws]
        x = torch.randn(1, n_in, device="cuda", dtype=torch.float16)
        dense = bench_graph(lambda x=x, ws=ws: [F.linear(x, w) for w in ws]) / copies
        rows = []
        for cfg in [None, *gemv_configs(n_in)]:
            row = {"config": cfg or "default"}
            for s in (0.0, 0.5):
                t = magnitude_threshold(x, s) if s else 0.0
                try:
                    ms = bench_graph(lambda x=x, t=t, cfg=cfg, cols=cols: [sparse_linear(x, w, threshold=t,
                                                                                           backend="triton",
                                                                                           config=cfg)
                                                                             for w in cols]) / copies
                except Exception as e:  # noqa: BLE001 - a config a shape cannot take
                    row[f"s{s}"] = f"{type(e).__name__}"
                    continue
                row[f"s{s}"] = dense / ms
            rows.append(row)
            print(f"{n_out}x{n_in} {row}", flush=True)
        res["shapes"][f"{n_in}->{n_out}"] = {"dense_us": dense * 1e3, "speedups": rows}
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
