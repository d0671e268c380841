"""Train a toy Pythia-style suite (GPT-NeoX) on the toy corpus, saving fp16 checkpoints on Pythia's schedule.

`train_suite("toy-pythia-4l")` regenerates the train split from the seed, trains with AdamW (warm-up, cosine
decay to 10%), evaluates the held-out loss of every saved checkpoint (fp16 weights upcast to fp32, the numbers
users get when they load it) and writes `data/models/<suite>/{suite.json, step<N>/}`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from interp.errors import ConfigError
from interp.toy import corpus
from interp.toy.build import DATA_DIR
from interp.toy.tokenizer import load_tokenizer

# Architecture of each embedded suite (Pythia/GPT-NeoX: rotary 25%, parallel residual, LayerNorm, GELU, untied).
SUITES: dict[str, dict] = {
    "toy-pythia-2l": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256},
    "toy-pythia-4l": {"num_hidden_layers": 4, "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 256},
    # the activation-sparsity suites (analyses.sparsity): exact zeros with ReLU, none with SiLU; small enough that
    # 16 checkpoints each fit the data budget
    "toy-pythia-relu": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 128,
                        "hidden_act": "relu"},
    "toy-pythia-silu": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 128,
                        "hidden_act": "silu"},
}


@dataclass
class TrainConfig:
    """Training hyper-parameters (defaults = the shipped suites)."""

    seed: int = 0
    steps: int = 3000
    batch: int = 8
    ctx: int = 256
    lr: float = 3e-3
    warmup: int = 100
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    n_train_docs: int = 60_000
    late_checkpoints: int = 3  # evenly spaced after 512, the last one = steps
    first_checkpoint: int = 0  # Pythia's log-spaced early checkpoints below this are not saved (step 0 always is)
    eval_batch: int = 64
    eval_blocks: int = 0  # held-out blocks scored per checkpoint (0: all of data/corpus/heldout.jsonl)


def checkpoint_steps(final: int, n_late: int = 3) -> list[int]:
    """Pythia's schedule: 0, 1, 2, 4, ..., 512 (only those < final), then n_late evenly spaced up to final."""
    if final < 1:
        raise ConfigError(f"steps must be >= 1, got {final}", hint="train for at least one step")
    log = [0] + [2**i for i in range(10) if 2**i < final]
    if final <= 512:
        return sorted(set(log + [final]))
    late = [round(512 + (final - 512) * (i + 1) / max(n_late, 1)) for i in range(max(n_late, 1))]
    if n_late >= 1 and final % n_late == 0 and final // n_late > 512:  # round numbers when possible
        late = [final * (i + 1) // n_late for i in range(n_late)]
    return sorted(set(log + late))


def model_config(suite: str, vocab_size: int, ctx: int):
    """GPTNeoXConfig of a suite (max_position_embeddings = training context)."""
    from transformers import GPTNeoXConfig

    if suite not in SUITES:
        raise ConfigError(f"unknown toy suite {suite!r}", hint=f"choose one of {sorted(SUITES)}")
    shape = {"hidden_act": "gelu", **SUITES[suite]}  # the MLP activation: gelu unless the suite names another
    return GPTNeoXConfig(vocab_size=vocab_size, max_position_embeddings=ctx, rotary_pct=0.25,
                         use_parallel_residual=True, tie_word_embeddings=False,
                         bos_token_id=0, eos_token_id=0, pad_token_id=1, layer_norm_eps=1e-5,
                         attention_dropout=0.0, hidden_dropout=0.0, **shape)


def pack_blocks(tokenizer, texts: list[str], ctx: int) -> torch.Tensor:
    """Tokenize documents (each starts with <|endoftext|>), concatenate, cut into [n_blocks, ctx] int64."""
    ids: list[int] = []
    for chunk in range(0, len(texts), 2000):
        for t in tokenizer(texts[chunk:chunk + 2000], add_special_tokens=False)["input_ids"]:
            ids.extend(t)
    n = len(ids) // ctx * ctx
    return torch.tensor(ids[:n], dtype=torch.long).view(-1, ctx)


@torch.no_grad()
def heldout_loss(model, blocks: torch.Tensor, batch: int = 64) -> float:
    """Mean next-token cross-entropy (nats/token) over `blocks` [n, ctx]."""
    dev = next(model.parameters()).device
    tot, n = 0.0, 0
    for i in range(0, len(blocks), batch):
        x = blocks[i:i + batch].to(dev)
        logits = model(input_ids=x).logits[:, :-1].float()
        tot += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                                 reduction="sum").item()
        n += x[:, 1:].numel()
    return tot / n


def save_checkpoint(model, folder: Path) -> None:
    """Save config.json + model.safetensors in float16 (no generation_config)."""
    folder.mkdir(parents=True, exist_ok=True)
    half = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    model.config.dtype = "float16"  # honest: the stored tensors are fp16 (load with dtype=torch.float32 to upcast)
    model.save_pretrained(str(folder), state_dict=half)
    gen = folder / "generation_config.json"
    if gen.exists():
        gen.unlink()


def _fp16_roundtrip(model, cfg):
    """A float32 copy of `model` with weights rounded through float16 (what a loaded checkpoint holds)."""
    from transformers import GPTNeoXForCausalLM

    m = GPTNeoXForCausalLM(cfg).to(next(model.parameters()).device).eval()
    m.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    return m


def _lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up then cosine decay to min_lr_frac * lr."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    t = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
    return tc.lr * (tc.min_lr_frac + (1 - tc.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def train_suite(suite: str = "toy-pythia-4l", out_dir: Path | str | None = None,
                tokenizer_dir: Path | str | None = None, corpus_dir: Path | str | None = None,
                config: TrainConfig | None = None, device: str = "cpu",
                log: Callable[[str], None] | None = print) -> dict:
    """Train `suite` and write `out_dir/<suite>/{suite.json, step<N>/}`; returns the suite.json dict.

    out_dir defaults to data/models, tokenizer_dir to data/tokenizer, corpus_dir (held-out split) to data/corpus.
    """
    from transformers import GPTNeoXForCausalLM

    tc = config or TrainConfig()
    out = Path(out_dir or DATA_DIR / "models") / suite
    tok_dir = Path(tokenizer_dir or DATA_DIR / "tokenizer")
    heldout_path = Path(corpus_dir or DATA_DIR / "corpus") / "heldout.jsonl"
    if not heldout_path.exists():
        raise ConfigError(f"held-out split not found: {heldout_path}", hint="run `python -m interp.toy.build`")
    log = log or (lambda s: None)
    tok = load_tokenizer(tok_dir)
    cfg = model_config(suite, len(tok), tc.ctx)
    steps_to_save = [s for s in checkpoint_steps(tc.steps, tc.late_checkpoints)
                     if s == 0 or s >= tc.first_checkpoint]

    t0 = time.time()
    train = pack_blocks(tok, corpus.train_texts(tc.seed, tc.n_train_docs), tc.ctx)
    held = pack_blocks(tok, [r["text"] for r in corpus.read_jsonl(heldout_path)], tc.ctx)
    if tc.eval_blocks:
        held = held[: tc.eval_blocks]
    log(f"{suite}: {len(train)} train blocks, {len(held)} held-out blocks of {tc.ctx} ({time.time() - t0:.1f}s)")

    torch.manual_seed(tc.seed)
    model = GPTNeoXForCausalLM(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(tc.seed)
    losses: dict[str, float] = {}
    train_loss: dict[str, float] = {}
    t_train = time.time()
    for step in range(tc.steps + 1):
        if step in steps_to_save:
            model.eval()
            save_checkpoint(model, out / f"step{step}")
            losses[str(step)] = round(heldout_loss(_fp16_roundtrip(model, cfg), held, tc.eval_batch), 5)
            log(f"{suite} step {step}: held-out loss {losses[str(step)]:.4f} ({time.time() - t_train:.0f}s)")
            model.train()
        if step == tc.steps:
            break
        idx = torch.randint(0, len(train), (tc.batch,), generator=gen)
        x = train[idx].to(device)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, tc)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0:
            train_loss[str(step)] = round(loss.item(), 5)
    seconds = time.time() - t_train
    info = {
        "suite": suite, "steps": steps_to_save, "final_step": tc.steps, "heldout_loss": losses,
        "train_loss": train_loss,
        "train": {**asdict(tc), "tokens": tc.steps * tc.batch * tc.ctx, "n_params": n_params,
                  "device": str(torch.device(device)) if device == "cpu" else torch.cuda.get_device_name(device),
                  "torch": torch.__version__, "seconds": round(seconds, 1),
                  "tokens_per_s": round(tc.steps * tc.batch * tc.ctx / max(seconds, 1e-9))},
        "architecture": {"family": "gpt_neox", "hidden_act": "gelu", **SUITES[suite], "vocab_size": len(tok),
                         "ctx": tc.ctx},
        "tokenizer": "data/tokenizer",
    }
    (out / "suite.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> None:
    """`python -m interp.toy.train [--suite S|all] [--steps N] [--batch B] [--device D] [--out DIR]`."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--suite", default="toy-pythia-4l", choices=sorted(SUITES) + ["all"])
    ap.add_argument("--out", type=Path, default=None, help="parent folder of <suite>/ (default data/models)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    defaults = TrainConfig()
    for k in ("seed", "steps", "batch", "ctx", "late_checkpoints", "first_checkpoint", "n_train_docs"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=getattr(defaults, k))
    ap.add_argument("--lr", type=float, default=defaults.lr)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tc = TrainConfig(seed=args.seed, steps=args.steps, batch=args.batch, ctx=args.ctx, lr=args.lr,
                     late_checkpoints=args.late_checkpoints, first_checkpoint=args.first_checkpoint,
                     n_train_docs=args.n_train_docs)
    for s in sorted(SUITES) if args.suite == "all" else [args.suite]:
        train_suite(s, args.out, config=tc, device=args.device)


if __name__ == "__main__":
    main()
