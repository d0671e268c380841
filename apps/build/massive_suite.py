"""Train small GPT-NeoX suites long enough for massive activations to emerge (GPU; reuses interp.toy training).

The embedded toy suites train for 3000 steps, too short for the top-1/median ratio to move much. This script
trains variants in parallel processes on one GPU for a wall-clock budget (constant learning rate after warm-up so
any stopping point is a valid end), saves fp16 checkpoints on a Pythia-like schedule (0, 1, 2, 4, …, 512, then
1000·2^k and the final step), measures each checkpoint's per-layer ratio on the embedded held-out blocks and writes
`<out>/<variant>/{suite.json, step<N>/}` plus `<out>/trajectories.json`.

    python -m apps.build.massive_suite --out /tmp/ma --seconds 200 --variants A,B,C,D
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
from pathlib import Path

import torch

from analyses.massive.method import median_abs

VARIANTS: dict[str, dict] = {  # architecture + optimiser of each candidate (fp16 size ≈ 2 bytes · params)
    "A": {"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256,
          "lr": 3e-3, "wd": 0.01},
    "B": {"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256,
          "lr": 1e-2, "wd": 0.1},
    "C": {"num_hidden_layers": 6, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
          "lr": 6e-3, "wd": 0.1},
    "D": {"num_hidden_layers": 4, "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 256,
          "lr": 3e-3, "wd": 0.01},
}
ARCH_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def schedule(step: int) -> bool:
    """Checkpoint at 0, powers of two up to 512, and 1000·2^k."""
    if step == 0 or (step <= 512 and step & (step - 1) == 0):
        return True
    return step >= 1000 and step % 1000 == 0 and (step // 1000) & (step // 1000 - 1) == 0


def neox_config(arch: dict, vocab_size: int, ctx: int):
    """GPTNeoXConfig with the embedded suites' conventions (rotary 25%, parallel residual, untied, GELU)."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(vocab_size=vocab_size, max_position_embeddings=ctx, rotary_pct=0.25,
                         use_parallel_residual=True, tie_word_embeddings=False, hidden_act="gelu",
                         bos_token_id=0, eos_token_id=0, pad_token_id=1, layer_norm_eps=1e-5,
                         attention_dropout=0.0, hidden_dropout=0.0, **{k: arch[k] for k in ARCH_KEYS})


@torch.no_grad()
def layer_ratios(model, tokens: torch.Tensor) -> dict:
    """Per-layer top-1/median |h| of each decoder layer's output (forward hooks), ratio of means over inputs."""
    outs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outs.append((o[0] if isinstance(o, tuple) else o)
                                                                       .detach().double()))
             for layer in model.gpt_neox.layers]
    try:
        model(input_ids=tokens.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    top, med = [], []
    for h in outs:  # [B, S, d]
        top.append(h.abs().flatten(1).max(1).values.mean().item())
        med.append(median_abs(h).mean().item())  # numpy's median (mean of the two middle values), as elsewhere
    return {"ratio_of_means": [t / m for t, m in zip(top, med)], "top1": top, "median": med}


def train_variant(name: str, out: str, seconds: float, data_path: str, seed: int, batch: int, ctx: int,
                  device: str) -> None:
    """Train one variant until the time budget, saving checkpoints and their ratios."""
    from transformers import GPTNeoXForCausalLM

    from interp.sources import token_blocks
    from interp.toy.tokenizer import load_tokenizer
    from interp.toy.train import _fp16_roundtrip, heldout_loss, save_checkpoint

    spec = VARIANTS[name]
    tok = load_tokenizer(Path(__file__).resolve().parents[2] / "data" / "tokenizer")
    from safetensors.torch import load_file

    blocks = load_file(data_path)
    train, held = blocks["train"], blocks["held"]
    evalt = token_blocks("embedded", tok, ctx=128, n_tokens=1280)
    cfg = neox_config(spec, len(tok), ctx)
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec["wd"]}, {"params": no_decay, "weight_decay": 0}],
                            lr=spec["lr"], betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(seed)
    root = Path(out) / name
    traj, losses, steps = {}, {}, []
    t0 = time.time()
    step = 0
    while True:
        done = time.time() - t0 > seconds
        if schedule(step) or done:
            model.eval()
            save_checkpoint(model, root / f"step{step}")
            m16 = _fp16_roundtrip(model, cfg)
            traj[str(step)] = layer_ratios(m16, evalt)
            losses[str(step)] = round(heldout_loss(m16, held[:64]), 5)
            steps.append(step)
            print(f"{name} step {step} t={time.time() - t0:.0f}s loss {losses[str(step)]:.3f} ratio "
                  f"{[round(r, 1) for r in traj[str(step)]['ratio_of_means']]}", flush=True)
            model.train()
        if done:
            break
        for g in opt.param_groups:
            g["lr"] = spec["lr"] * min(1.0, (step + 1) / 200)
        x = train[torch.randint(0, len(train), (batch,), generator=gen)].to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
    info = {"suite": f"toy-pythia-massive-{name}", "steps": steps, "final_step": step, "heldout_loss": losses,
            "ratio_by_step": traj,
            "train": {"seed": seed, "batch": batch, "ctx": ctx, "lr": spec["lr"], "weight_decay": spec["wd"],
                      "warmup": 200, "schedule": "constant after warm-up", "tokens": step * batch * ctx,
                      "n_params": n_params, "seconds": round(time.time() - t0, 1), "device": device,
                      "torch": torch.__version__},
            "architecture": {"family": "gpt_neox", **{k: spec[k] for k in ARCH_KEYS}, "vocab_size": len(tok),
                             "ctx": ctx},
            "tokenizer": "data/tokenizer", "made_by": "python -m apps.build.massive_suite"}
    (root / "suite.json").write_text(json.dumps(info, indent=1) + "\n")


def build_data(path: Path, n_docs: int, ctx: int, seed: int, workers: int = 8) -> None:
    """Regenerate train text (per-worker seeds) and the held-out split, tokenize, save int64 blocks."""
    from interp.toy import corpus
    from interp.toy.tokenizer import load_tokenizer
    from interp.toy.train import pack_blocks

    tok = load_tokenizer(Path(__file__).resolve().parents[2] / "data" / "tokenizer")
    per = math.ceil(n_docs / workers)
    with mp.get_context("fork").Pool(workers) as pool:
        texts = pool.starmap(corpus.train_texts, [(seed * 1000 + i, per) for i in range(workers)])
    train = torch.cat([pack_blocks(tok, t, ctx) for t in texts])
    held = pack_blocks(tok, [r["text"] for r in corpus.read_jsonl(
        Path(__file__).resolve().parents[2] / "data" / "corpus" / "heldout.jsonl")], ctx)
    from safetensors.torch import save_file

    save_file({"train": train.contiguous(), "held": held.contiguous()}, str(path))


def main(argv: list[str] | None = None) -> None:
    """Parse args, build data once, train the variants in parallel processes."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=200)
    ap.add_argument("--variants", default="A,B,C,D")
    ap.add_argument("--n-docs", type=int, default=240_000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = a.out / "blocks.safetensors"
    build_data(data, a.n_docs, a.ctx, a.seed)
    print(f"data {time.time() - t0:.0f}s", flush=True)
    ctxm = mp.get_context("spawn")
    procs = [ctxm.Process(target=train_variant, args=(v, str(a.out), a.seconds, str(data), a.seed, a.batch, a.ctx,
                                                       a.device)) for v in a.variants.split(",")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    traj = {}
    for v in a.variants.split(","):
        f = a.out / v / "suite.json"
        if f.is_file():
            info = json.loads(f.read_text())
            traj[v] = {"ratio_by_step": info["ratio_by_step"], "heldout_loss": info["heldout_loss"],
                       "train": info["train"], "architecture": info["architecture"]}
    (a.out / "trajectories.json").write_text(json.dumps(traj, indent=1))
    print(f"total {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
