"""Train the modular-addition transformer of the LIB paper (spec lib.md §6), several seeds at once.

Pure torch (no transformer-lens) so it runs on a bare GPU image: `python -m apps.build.modadd --out DIR`.
The weights use transformer-lens state-dict names (`embed.W_E`, `blocks.0.attn.W_Q`, ...), so
`analyses.lib.modadd.load_modadd` turns them into a `HookedTransformer` with identical logits.

Recipe (ApolloResearch/rib, rib_scripts/train_modular_arithmetic): p = 113, tokens [x, y, p], label (x+y) mod p,
1 layer, d_model 128, 4 heads x 32, d_mlp 512, ReLU, no LayerNorm, d_vocab 114, AdamW(lr 1e-3, wd 1,
betas (0.9, 0.98)) with warm-up min(step/10, 1), full batch on 30% of the pairs, 60000 epochs.
Seeds train in one batched model (leading seed axis); AdamW is elementwise, so each seed's trajectory equals
training it alone.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from analyses.lib.modadd import MODADD_CFG, pairs_to_tokens, split_indices


def init_params(seeds: list[int], cfg: dict = MODADD_CFG) -> dict[str, torch.Tensor]:
    """transformer-lens 'gpt2' init (W_* ~ N(0, 0.8/sqrt(d_model)), biases 0), stacked over seeds."""
    d, h, e, m, v = cfg["d_model"], cfg["n_heads"], cfg["d_head"], cfg["d_mlp"], cfg["d_vocab"]
    shapes = {
        "embed.W_E": (v, d), "pos_embed.W_pos": (cfg["n_ctx"], d),
        "blocks.0.attn.W_Q": (h, d, e), "blocks.0.attn.W_K": (h, d, e), "blocks.0.attn.W_V": (h, d, e),
        "blocks.0.attn.W_O": (h, e, d), "blocks.0.attn.b_Q": (h, e), "blocks.0.attn.b_K": (h, e),
        "blocks.0.attn.b_V": (h, e), "blocks.0.attn.b_O": (d,),
        "blocks.0.mlp.W_in": (d, m), "blocks.0.mlp.b_in": (m,), "blocks.0.mlp.W_out": (m, d),
        "blocks.0.mlp.b_out": (d,), "unembed.W_U": (d, cfg["d_vocab_out"]), "unembed.b_U": (cfg["d_vocab_out"],),
    }
    std = 0.8 / math.sqrt(d)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in shapes}
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        for k, shp in shapes.items():
            is_w = k.split(".")[-1].startswith("W_")
            out[k].append(torch.randn(shp, generator=g) * std if is_w else torch.zeros(shp))
    return {k: torch.stack(v) for k, v in out.items()}


def forward(P: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Batched-over-seeds forward, transformer-lens semantics: tokens [S, B, 3] -> logits [S, B, 3, V]."""
    S = tokens.shape[0]
    sidx = torch.arange(S, device=tokens.device)[:, None, None]
    x = P["embed.W_E"][sidx, tokens] + P["pos_embed.W_pos"][:, None]
    a = "blocks.0.attn."
    q = torch.einsum("sbpd,shde->sbphe", x, P[a + "W_Q"]) + P[a + "b_Q"][:, None, None]
    k = torch.einsum("sbpd,shde->sbphe", x, P[a + "W_K"]) + P[a + "b_K"][:, None, None]
    v = torch.einsum("sbpd,shde->sbphe", x, P[a + "W_V"]) + P[a + "b_V"][:, None, None]
    scores = torch.einsum("sbqhe,sbkhe->sbhqk", q, k) / math.sqrt(q.shape[-1])
    n = tokens.shape[-1]
    causal = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    z = torch.einsum("sbhqk,sbkhe->sbqhe", scores.softmax(-1), v)
    x = x + torch.einsum("sbqhe,shed->sbqd", z, P[a + "W_O"]) + P[a + "b_O"][:, None, None]
    mm = "blocks.0.mlp."
    hid = torch.relu(torch.einsum("sbpd,sdm->sbpm", x, P[mm + "W_in"]) + P[mm + "b_in"][:, None, None])
    x = x + torch.einsum("sbpm,smd->sbpd", hid, P[mm + "W_out"]) + P[mm + "b_out"][:, None, None]
    return torch.einsum("sbpd,sdv->sbpv", x, P["unembed.W_U"]) + P["unembed.b_U"][:, None, None]


def _capture(step) -> torch.cuda.CUDAGraph:
    """Record one training step as a CUDA graph (after the eager warm-up steps)."""
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


def train(seeds: list[int], epochs: int, device: str, max_seconds: float, p: int = 113,
          frac_train: float = 0.3, eval_every: int = 1000,
          use_graph: bool = False) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Full-batch AdamW training of all seeds together; returns stacked params and the eval log."""
    torch.manual_seed(0)
    P = {k: t.to(device).requires_grad_(True) for k, t in init_params(seeds).items()}
    tr, te = zip(*(split_indices(s, p, frac_train) for s in seeds))
    Xtr, Ytr = (torch.stack(t).to(device) for t in zip(*(pairs_to_tokens(i, p) for i in tr)))
    Xte, Yte = (torch.stack(t).to(device) for t in zip(*(pairs_to_tokens(i, p) for i in te)))
    opt = torch.optim.AdamW(list(P.values()), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98), capturable=use_graph)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(step / 10, 1))
    log: list[dict] = []
    t0 = time.time()

    def evaluate(epoch: int) -> None:
        with torch.no_grad():
            acc_tr = (forward(P, Xtr)[:, :, -1].argmax(-1) == Ytr).double().mean(1).tolist()
            acc_te = (forward(P, Xte)[:, :, -1].argmax(-1) == Yte).double().mean(1).tolist()
        log.append({"epoch": epoch, "train_acc": acc_tr, "test_acc": acc_te, "seconds": time.time() - t0})
        print(json.dumps(log[-1]), flush=True)

    def step() -> None:
        opt.zero_grad(set_to_none=False)
        logits = forward(P, Xtr)[:, :, -1]
        # sum over seeds of each seed's mean cross-entropy: gradients stay per seed
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), Ytr.flatten(), reduction="none")
        loss.view(len(seeds), -1).mean(1).sum().backward()
        opt.step()

    warmup = 11  # the LambdaLR warm-up runs eagerly; after it the learning rate is constant
    graph = None
    for epoch in range(epochs):
        if epoch % eval_every == 0:
            evaluate(epoch)
        if graph is None and use_graph and epoch == warmup:
            graph = _capture(step)
        if graph is not None:
            graph.replay()  # the same step, launched as one CUDA graph (this tiny model is launch-bound)
        else:
            step()
            sched.step()
        if time.time() - t0 > max_seconds:
            print(f"time limit reached at epoch {epoch + 1}", flush=True)
            epochs = epoch + 1
            break
    evaluate(epochs)
    return {k: t.detach().cpu() for k, t in P.items()}, log


def main() -> None:
    """CLI: train the seeds and write modadd_seed{S}.safetensors + .json per seed into --out."""
    from safetensors.torch import save_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=60000)
    ap.add_argument("--max-seconds", type=float, default=1e9)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cuda-graph", action="store_true", help="replay each step as a CUDA graph (same maths)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    P, log = train(a.seeds, a.epochs, a.device, a.max_seconds, use_graph=a.cuda_graph)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(a.seeds):
        save_file({k: v[i].contiguous().float() for k, v in P.items()}, str(out / f"modadd_seed{s}.safetensors"))
        meta = {
            "cfg": MODADD_CFG, "seed": s, "p": 113, "frac_train": 0.3, "split": "numpy PCG64 permutation(seed)",
            "optimizer": "AdamW lr 1e-3 wd 1 betas (0.9, 0.98), warm-up min(step/10, 1), full batch",
            "epochs": log[-1]["epoch"], "train_acc": log[-1]["train_acc"][i], "test_acc": log[-1]["test_acc"][i],
            "train_seconds": log[-1]["seconds"],
            "device": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
            "torch": torch.__version__,
            "log": [{"epoch": r["epoch"], "train_acc": r["train_acc"][i], "test_acc": r["test_acc"][i]} for r in log],
        }
        (out / f"modadd_seed{s}.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
