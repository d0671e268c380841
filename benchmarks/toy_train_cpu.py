"""CPU speed of toy-suite training (ms/step, tokens/s) at the default TrainConfig, and the projected full run.

Usage: python benchmarks/toy_train_cpu.py [--steps 30] [--threads 2]
Writes nothing; paste the printed table into benchmarks/results/toy_train_cpu.md.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from interp.toy import corpus
from interp.toy.build import DATA_DIR
from interp.toy.tokenizer import load_tokenizer
from interp.toy.train import SUITES, TrainConfig, _lr_at, model_config, pack_blocks


def bench(suite: str, steps: int, tc: TrainConfig) -> tuple[float, float, int]:
    """Wall seconds and CPU seconds (all threads) per optimiser step after 3 warm-up steps; parameter count.

    On a shared machine the CPU seconds per step are what an idle core would take (with --threads 1).
    """
    from transformers import GPTNeoXForCausalLM

    tok = load_tokenizer(DATA_DIR / "tokenizer")
    blocks = pack_blocks(tok, corpus.train_texts(tc.seed, 2000), tc.ctx)
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(model_config(suite, len(tok), tc.ctx)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr)
    gen = torch.Generator().manual_seed(0)
    for i in range(steps + 3):
        if i == 3:
            t0, c0 = time.perf_counter(), time.process_time()
        x = blocks[torch.randint(0, len(blocks), (tc.batch,), generator=gen)]
        for g in opt.param_groups:
            g["lr"] = _lr_at(i, tc)
        model(input_ids=x, labels=x).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall / steps, cpu / steps, sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tc = TrainConfig()
    print(f"torch {torch.__version__}, threads {args.threads}, load average before {os.getloadavg()}")
    print("| suite | params | wall ms/step | CPU ms/step | tokens per CPU-second | projected run (CPU time) |")
    print("|---|---|---|---|---|---|")
    for suite in sorted(SUITES):
        s, c, n = bench(suite, args.steps, tc)
        toks = tc.batch * tc.ctx
        proj = f"{tc.steps * c / 60:.1f} min for {tc.steps} steps"
        print(f"| {suite} | {n:,} | {s * 1e3:.0f} | {c * 1e3:.0f} | {toks / c:,.0f} | {proj} |")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
