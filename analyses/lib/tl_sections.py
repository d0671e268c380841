"""LIB sections of a transformer-lens HookedTransformer: its forward re-implemented from its weights, bias folded.

Every activation is [x, c] with the bias coordinate c last (=1 on data; analyses.lib.cut); each bias b of the
network enters as c·b, so a section at (αx, αc) is rib's folded-bias section at integration point α. Norms keep
TL's constant ε (rib's convention), so they are not homogeneous in α; with c = 0 and x = 0 every step returns 0.

Per block i (pre-norm, sequential: resid_mid = x + attn(ln1 x), resid_post = resid_mid + mlp(ln2 resid_mid);
parallel: x + attn(ln1 x) + mlp(ln2 x)):

* norms (TL's LayerNorm / LayerNormPre / RMSNorm / RMSNormPre; no Gemma-style 1 + w offset in TL's RMSNorm):
  LN(x) = (x - x̄) / √(mean((x - x̄)²) + ε) · w + c·b,   RMS(x) = x / √(mean(x²) + ε) · w;
* attention, query head h, key/value head g(h) = h // (n_heads / n_kv_heads) (TL's GroupedQueryAttention,
  repeat_interleave; g(h) = h without grouping):
  q_h = x W_Q[h] + c b_Q[h],  k_g = x W_K[g] + c b_K[g],  v_g = x W_V[g] + c b_V[g];
  with `use_qk_norm` (Qwen3) q_h ← RMS_{d_head}(q_h) · w_q and k_g ← RMS_{d_head}(k_g) · w_k (TL applies them after
  the biases, before rotary); rotary on q and k; scores q_h·k_{g(h)} / attn_scale, causal (and, for TL's "local"
  layers, key > query - window_size), softmax; out = Σ_h z_h W_O[h] + c b_O;
* MLP: act(x W_in + c b_in) W_out + c b_out; gated (TL's GatedMLP):
  (act(x W_gate) ⊙ (x W_in) + c b_in) W_out + c b_out (b_in is added after the product; W_gate has no bias);
* final: LN/RMS (ln_final), unembed x W_U + c b_U.

The closed-form step Jacobians (analyses.lib.structured) cover only the plain case: no norm, standard positions,
non-gated MLP, ungrouped heads without q/k norms; every other section has no `jac` and `lib_build` takes
`torch.func` Jacobians of the functions here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from analyses.lib import structured
from analyses.lib.cut import LIBModel, Section, compose, split_bias
from interp.errors import ConfigError, HookNotFoundError

_POST_NORM = ("Olmo2ForCausalLM", "Olmo3ForCausalLM", "OlmoeForCausalLM")


def _unsupported(cfg) -> str | None:
    """What of this TL config the folded forward does not implement (None: everything is)."""
    g = lambda k, d=None: getattr(cfg, k, d)  # noqa: E731 (a SimpleNamespace cfg lacks most fields)
    checks = [
        (g("act_fn", "") == "solu_ln", "SoLU-LN MLPs"),
        (g("positional_embedding_type", "standard") not in ("standard", "rotary"),
         f"positional embedding '{g('positional_embedding_type')}'"),
        (g("attention_dir", "causal") != "causal", "bidirectional attention"),
        (g("attn_only", False), "attention-only blocks"),
        (g("num_experts") is not None, "mixture-of-experts MLPs"),
        (g("use_normalization_before_and_after", False), "norms before and after each branch (Gemma 2/3)"),
        (g("original_architecture") in _POST_NORM, "post-norm blocks (OLMo 2/3)"),
        (g("post_embedding_ln", False), "a LayerNorm after the embedding"),
        ((g("attn_scores_soft_cap", -1.0) or -1.0) > 0, "soft-capped attention scores"),
        ((g("output_logits_soft_cap", -1.0) or -1.0) > 0, "soft-capped logits"),
        (g("use_attention_sinks", False), "attention sinks"),
        (g("clip_qkv") is not None, "clipped q/k/v"),
        (g("use_logn_attn", False), "log-n query scaling"),
        (g("normalization_type") not in (None, "LN", "LNPre", "RMS", "RMSPre"),
         f"normalization '{g('normalization_type')}'"),
    ]
    return next((why for bad, why in checks if bad), None)


class _TLFolded:
    """Folded-bias re-implementation of a HookedTransformer's forward, step by step, from its weights (float64)."""

    def __init__(self, model: nn.Module):
        cfg = model.cfg
        self.model, self.cfg = model, cfg
        why = _unsupported(cfg)
        if why is not None:
            raise ConfigError(f"LIB sections do not implement {why}",
                              hint="LIB runs on pre-norm decoders: GPT-2/NeoX/Neo-style, and Llama, Mistral, Qwen2, "
                                   "Qwen3, Phi-3 (RMSNorm, rotary, grouped-query heads, gated MLPs)")
        self.W = {k: v.detach().to(torch.float64) for k, v in model.state_dict().items()
                  if v.is_floating_point()}
        self.L = cfg.n_layers
        self.parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
        self.gated = bool(getattr(cfg, "gated_mlp", False))
        self.qk_norm = bool(getattr(cfg, "use_qk_norm", False))
        n_kv = getattr(cfg, "n_key_value_heads", None)
        self.grouped = n_kv is not None
        self.repeat = cfg.n_heads // n_kv if self.grouped else 1
        self.plain = cfg.normalization_type is None and cfg.positional_embedding_type == "standard"
        # closed-form step Jacobians are written for plain blocks with ungrouped heads and non-gated MLPs
        self.structured = self.plain and not (self.gated or self.grouped or self.qk_norm)

    # ------------------------------------------------------------------------------------------ pieces
    def _rms(self, x: Tensor, w: Tensor) -> Tensor:
        """TL's RMSNorm over the last axis: x / √(mean(x²) + ε) · w."""
        return x / (x.pow(2).mean(-1, keepdim=True) + self.cfg.eps).sqrt() * w

    def _norm(self, x: Tensor, c: Tensor, prefix: str) -> Tensor:
        kind = self.cfg.normalization_type
        if kind is None:
            return x
        if kind in ("LN", "LNPre"):
            x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + self.cfg.eps).sqrt()
        if kind == "LN":
            return x * self.W[prefix + ".w"] + c * self.W[prefix + ".b"]
        if kind == "RMS":
            return x * self.W[prefix + ".w"]
        return x                                                     # LNPre, RMSPre: no weights

    def _attn_module(self, i: int):
        blocks = getattr(self.model, "blocks", None)
        return getattr(blocks[i], "attn", None) if blocks is not None else None

    def _scale(self, i: int) -> float:
        """TL's attn_scale of block i (√d_head, times i+1 with scale_attn_by_inverse_layer_idx; 1 if unused)."""
        mod = self._attn_module(i)
        if mod is not None and hasattr(mod, "attn_scale"):
            return float(mod.attn_scale)
        return float(self.cfg.attn_scale) if getattr(self.cfg, "use_attn_scale", True) else 1.0

    def _kv_weights(self, a: str, which: str) -> tuple[Tensor, Tensor]:
        """W_K / W_V [n_kv, d, e] and b [n_kv, e]: TL keeps grouped ones as _W_K, _b_K, ..."""
        pre = "_" if f"{a}_W_{which}" in self.W else ""
        return self.W[a + f"{pre}W_{which}"], self.W[a + f"{pre}b_{which}"]

    def _attn(self, h: Tensor, c: Tensor, i: int, last: bool) -> Tensor:
        """Attention output [B, Q, d] (Q = 1 if last) from normed input h [B, P, d] and bias coordinate c."""
        W, a = self.W, f"blocks.{i}.attn."
        P = h.shape[1]
        hq, cq = (h[:, -1:], c[:, -1:]) if last else (h, c)
        WK, bK = self._kv_weights(a, "K")
        WV, bV = self._kv_weights(a, "V")
        q = torch.einsum("bpd,hde->bphe", hq, W[a + "W_Q"]) + cq[..., None] * W[a + "b_Q"]
        k = torch.einsum("bpd,hde->bphe", h, WK) + c[..., None] * bK
        v = torch.einsum("bpd,hde->bphe", h, WV) + c[..., None] * bV
        if self.qk_norm:                                  # per head, over d_head, before rotary (TL, Qwen3)
            q, k = self._rms(q, W[a + "q_norm.w"]), self._rms(k, W[a + "k_norm.w"])
        mod = self._attn_module(i)
        if self.cfg.positional_embedding_type == "rotary":
            q = mod.apply_rotary(q, P - 1 if last else 0).to(torch.float64)
            k = mod.apply_rotary(k, 0).to(torch.float64)
        if k.shape[2] != q.shape[2]:                      # query head h reads key/value head h // repeat
            k = k.repeat_interleave(self.repeat, dim=2)
            v = v.repeat_interleave(self.repeat, dim=2)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / self._scale(i)
        qpos, kpos = torch.arange(P - q.shape[1], P), torch.arange(P)
        mask = qpos[:, None] >= kpos[None, :]
        if getattr(mod, "attn_type", "global") == "local":
            mask = mask & (kpos[None, :] > qpos[:, None] - int(self.cfg.window_size))
        scores = scores.masked_fill(~mask, float("-inf"))
        z = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v)
        return torch.einsum("bqhe,hed->bqd", z, W[a + "W_O"]) + cq * W[a + "b_O"]

    def _mlp(self, h: Tensor, c: Tensor, i: int) -> Tensor:
        W, m = self.W, f"blocks.{i}.mlp."
        act = self.model.blocks[i].mlp.act_fn
        if self.gated:                                    # TL GatedMLP: b_in after the product, W_gate unbiased
            post = act(h @ W[m + "W_gate"]) * (h @ W[m + "W_in"]) + c * W[m + "b_in"]
        else:
            post = act(h @ W[m + "W_in"] + c * W[m + "b_in"])
        return post @ W[m + "W_out"] + c * W[m + "b_out"]

    # ------------------------------------------------------------------------------------------ steps
    def attn_step(self, i: int, last: bool) -> Section:
        def f(xa: Tensor) -> Tensor:
            x, c = split_bias(xa)
            out = self._attn(self._norm(x, c, f"blocks.{i}.ln1"), c, i, last)
            if last:
                return torch.cat([x[:, -1] + out[:, 0], c[:, -1]], -1)
            return torch.cat([x + out, c], -1)
        if self.structured and last:
            f.jac = structured.last_query_attn_jac(self.W, f"blocks.{i}.attn.", self._scale(i))
        return f

    def mlp_step(self, i: int) -> Section:
        def f(xa: Tensor) -> Tensor:
            x, c = split_bias(xa)
            return torch.cat([x + self._mlp(self._norm(x, c, f"blocks.{i}.ln2"), c, i), c], -1)
        if self.structured:
            m = f"blocks.{i}.mlp."
            f.jac = structured.mlp_jac(self.W[m + "W_in"], self.W[m + "b_in"], self.W[m + "W_out"],
                                       self.W[m + "b_out"], self.model.blocks[i].mlp.act_fn)
        return f

    def block_step(self, i: int, last: bool) -> Section:
        """Parallel attention + MLP: x + attn(ln1 x) + mlp(ln2 x)."""
        def f(xa: Tensor) -> Tensor:
            x, c = split_bias(xa)
            a = self._attn(self._norm(x, c, f"blocks.{i}.ln1"), c, i, last)
            if last:
                x, c, a = x[:, -1], c[:, -1], a[:, 0]
            return torch.cat([x + a + self._mlp(self._norm(x, c, f"blocks.{i}.ln2"), c, i), c], -1)
        return f

    def ln_final_step(self) -> Section:
        def f(xa: Tensor) -> Tensor:
            x, c = split_bias(xa)
            return torch.cat([self._norm(x, c, "ln_final"), c], -1)
        if self.cfg.normalization_type is None:
            f.jac = structured.identity_jac()
        return f

    def unembed_step(self) -> Section:
        def f(xa: Tensor) -> Tensor:
            x, c = split_bias(xa)
            return x @ self.W["unembed.W_U"] + c * self.W["unembed.b_U"]
        f.jac = structured.unembed_jac(self.W["unembed.W_U"], self.W["unembed.b_U"])
        return f

    def embed(self, tokens: Tensor) -> Tensor:
        x = self.W["embed.W_E"][tokens]
        if self.cfg.positional_embedding_type == "standard":
            x = x + self.W["pos_embed.W_pos"][: tokens.shape[1]]
        return torch.cat([x, torch.ones_like(x[..., :1])], -1)


def _tl_points(L: int, parallel: bool) -> list[str]:
    pts = []
    for i in range(L):
        pts.append(f"blocks.{i}.hook_resid_pre")
        if not parallel:
            pts.append(f"blocks.{i}.hook_resid_mid")
    return pts + [f"blocks.{L - 1}.hook_resid_post", "unembed", "output"]


def canonical_tl_name(name: str, L: int) -> str:
    """rib names (ln1.i, ln2.i, ln_final, unembed, output) and resid_post.i -> the canonical TL hook name."""
    parts = name.split(".")
    if len(parts) == 2 and parts[0] in ("ln1", "ln2") and parts[1].isdigit():
        return f"blocks.{parts[1]}.hook_resid_{'pre' if parts[0] == 'ln1' else 'mid'}"
    if name == "ln_final":
        return f"blocks.{L - 1}.hook_resid_post"
    if len(parts) == 3 and parts[0] == "blocks" and parts[2] == "hook_resid_post" and int(parts[1]) < L - 1:
        return f"blocks.{int(parts[1]) + 1}.hook_resid_pre"
    return name


def transformer_lib_model(model: nn.Module, node_layers: list[str], last_pos_only: bool = False) -> LIBModel:
    """Cut a HookedTransformer at node layers (TL hook names or rib names); inputs are token ids [B, P]."""
    tf = _TLFolded(model)
    L = tf.L
    pts = _tl_points(L, tf.parallel)
    steps: list[Section] = []
    for i in range(L):
        last = last_pos_only and i == L - 1
        if tf.parallel:
            steps.append(tf.block_step(i, last))
        else:
            steps += [tf.attn_step(i, last), tf.mlp_step(i)]
    steps += [tf.ln_final_step(), tf.unembed_step()]
    idx = []
    for n in node_layers:
        cn = canonical_tl_name(n, L)
        if cn not in pts:
            raise HookNotFoundError(f"'{n}' is not a LIB node layer of this model",
                                    hint=f"use residual-stream hooks in order: {', '.join(pts)}")
        idx.append(pts.index(cn))
    if idx != sorted(set(idx)):
        raise ConfigError("node layers must be distinct and in forward order", hint=f"order: {', '.join(pts)}")
    after_last_attn = len(pts) - (3 if tf.parallel else 4)  # first point computed by the last attention step
    has_pos = [not (last_pos_only and j >= after_last_attn) for j in idx]
    sections = [compose(steps[a:b]) for a, b in zip(idx[:-1], idx[1:])]
    pre = compose(steps[: idx[0]])
    return LIBModel(list(node_layers), sections, lambda tokens: pre(tf.embed(tokens)), has_pos)
