"""ObsProp maths vs autograd / direct logit attribution / closed forms, on random float64 transformer-lens models."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformer_lens")
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

from analyses.obsprop.method import (  # noqa: E402
    cosine,
    feature_vector,
    parse_node,
    pullback_head_ov,
    pullback_mlp,
)
from analyses.obsprop.observables import (  # noqa: E402
    ln_final_boundary,
    observable,
    pullback_layernorm,
    pullback_unembed,
)
from analyses.obsprop.patching import at_pos, greedy_paths, path_function, run_cache  # noqa: E402
from analyses.obsprop.tasks import head_source_ref, mean_refs  # noqa: E402
from interp.errors import ConfigError  # noqa: E402

torch.set_num_threads(1)


def make_model(n_layers=2, parallel=False, attn_only=False, d_model=128, seed=0) -> HookedTransformer:
    """Small random float64 TL model with LayerNorm (stack.md §2.1), LN gains/biases randomised."""
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=d_model, n_heads=4, d_head=d_model // 4,
                                  d_mlp=4 * d_model, d_vocab=200, n_ctx=32, act_fn="gelu",
                                  normalization_type="LN", positional_embedding_type="rotary", rotary_dim=8,
                                  seed=seed, device="cpu", dtype=torch.float64, parallel_attn_mlp=parallel,
                                  attn_only=attn_only)
    m = HookedTransformer(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("ln1.w", "ln2.w", "ln_final.w")):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            elif name.endswith(("ln1.b", "ln2.b", "ln_final.b", "b_in", "b_V", "b_U")):
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def rel(a, b) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def toks():
    return torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(1))


def test_observable_vector(model):
    n = observable(model, [3, 5], [7])
    assert n[3] == 1 and n[5] == 1 and n[7] == -1 and n.abs().sum() == 3
    with pytest.raises(ConfigError):
        observable(model, ["she"])  # no tokenizer
    with pytest.raises(ConfigError):
        parse_node(model, "attn9.0")


@pytest.mark.parametrize("frozen_ln", [True, False])
def test_head_feature_vector_equals_autograd(model, toks, frozen_ln):
    """grad of n·logits[i] w.r.t. resid_pre_1[j] through head (1,h) only == A[i,j]·(LN pullback of W_V W_O y)."""
    n = observable(model, [3, 11], [5])
    logits, cache = run_cache(model, toks)
    i, L, h = toks.shape[1] - 1, 1, 2
    grab = {}

    def freeze(name):
        return lambda act, hook: cache[name]

    def leaf(act, hook):
        grab["x"] = act.detach().clone().requires_grad_(True)
        return grab["x"]

    def only_head(act, hook):
        mask = torch.zeros(act.shape[2], 1, dtype=act.dtype)
        mask[h] = 1
        return act.detach() + mask * (act - act.detach())

    hooks = [(f"blocks.{L}.hook_resid_pre", leaf), (f"blocks.{L}.attn.hook_v", only_head),
             (f"blocks.{L}.hook_mlp_out", lambda a, hook: a.detach())]
    hooks += [(k, freeze(k)) for k in cache if k.endswith("hook_pattern")]
    if frozen_ln:
        hooks += [(k, freeze(k)) for k in cache if k.endswith("hook_scale")]
    with torch.enable_grad():
        out = model.run_with_hooks(toks, fwd_hooks=hooks)
        (out[0, i] @ n).backward()
    grad = grab["x"].grad[0]
    mode = "frozen" if frozen_ln else "exact"
    y_f = pullback_layernorm(model.ln_final, pullback_unembed(model, n), cache[f"blocks.{L}.hook_resid_post"][0, i],
                             mode=mode)
    y_h = pullback_head_ov(model, L, h, y_f)
    A = cache[f"blocks.{L}.attn.hook_pattern"][0, h, i]
    for j in range(i):
        want = A[j] * pullback_layernorm(model.blocks[L].ln1, y_h, cache[f"blocks.{L}.hook_resid_pre"][0, j],
                                         mode=mode)
        assert rel(grad[j], want) < 1e-5
    # and through feature_vector (the public composition) at source token j = 0
    refs = {k: v[0, i] for k, v in cache.items() if "hook_resid" in k}
    y_fv, _ = feature_vector(model, n, [f"attn{L}.{h}"], refs, ln=mode,
                             node_refs={f"attn{L}.{h}": cache[f"blocks.{L}.hook_resid_pre"][0, 0]})
    assert rel(grad[0], A[0] * y_fv) < 1e-5


@pytest.mark.parametrize("parallel,frozen_ln", [(False, True), (False, False), (True, True)])
def test_path_feature_vector_equals_autograd(toks, parallel, frozen_ln):
    """Path attn0.1 -> mlp0|mlp1 -> attn1.3: autograd of the path function == Σ_m A1[i,m] A0[m,j] y(j; m)."""
    model = make_model(n_layers=3 if parallel else 2, parallel=parallel, seed=3)
    n = observable(model, [8], [9, 10])
    _, cache = run_cache(model, toks)
    La = 2 if parallel else 1
    path = ["attn0.1", "mlp1" if parallel else "mlp0", f"attn{La}.3"]
    mlp_node = parse_node(model, path[1])
    mlp_hook = "blocks.1.hook_resid_pre" if parallel else "blocks.0.hook_resid_mid"
    i = toks.shape[1] - 1
    x = cache["blocks.0.hook_resid_pre"].clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(path_function(model, cache, n, path, x, pos=i, freeze_ln=frozen_ln), x)
    mode = "frozen" if frozen_ln else "exact"
    A0 = cache["blocks.0.attn.hook_pattern"][0, 1]
    A1 = cache[f"blocks.{La}.attn.hook_pattern"][0, 3]
    refs = {k: v[0, i] for k, v in cache.items() if "hook_resid" in k}
    for j in (0, 4):
        want = torch.zeros_like(g[0, j])
        for m in range(j, i + 1):
            nr = {"attn0.1": cache["blocks.0.hook_resid_pre"][0, j], str(mlp_node): cache[mlp_hook][0, m],
                  f"attn{La}.3": cache[f"blocks.{La}.hook_resid_pre"][0, m]}
            y, _ = feature_vector(model, n, path, refs, ln=mode, mlp="point", node_refs=nr)
            want += A1[i, m] * A0[m, j] * y
        assert rel(g[0, j], want) < 1e-5


def test_direct_logit_attribution_reconstructs_observable(toks):
    """OV identity per head and source token; all direct terms sum to n·logits (ln_final scale frozen)."""
    model = make_model(seed=5)
    n = observable(model, [1, 2], [3])
    logits, cache = run_cache(model, toks)
    torch.set_grad_enabled(False)
    _, c2 = model.run_with_cache(toks, names_filter=lambda k: k.endswith(("hook_v", "hook_embed", "hook_mlp_out")))
    b, i = 1, toks.shape[1] - 1
    y_f = pullback_layernorm(model.ln_final, pullback_unembed(model, n), cache["blocks.1.hook_resid_post"][b, i],
                             mode="frozen")
    total = c2["hook_embed"][b, i] @ y_f
    for L in range(2):
        blk = model.blocks[L]
        total += blk.attn.b_O @ y_f + c2[f"blocks.{L}.hook_mlp_out"][b, i] @ y_f
        ln1_x = blk.ln1(cache[f"blocks.{L}.hook_resid_pre"][b])           # [pos, d]
        for h in range(4):
            A = cache[f"blocks.{L}.attn.hook_pattern"][b, h, i]
            y_h = pullback_head_ov(model, L, h, y_f)
            for j in range(i + 1):
                direct = y_f @ (A[j] * (c2[f"blocks.{L}.attn.hook_v"][b, j, h] @ blk.attn.W_O[h]))
                ov = A[j] * (y_h @ ln1_x[j] + blk.attn.b_V[h] @ (blk.attn.W_O[h] @ y_f))
                assert abs(float(direct - ov)) <= 1e-5 * max(1.0, abs(float(direct)))
                total += ov
    total += model.ln_final.b @ pullback_unembed(model, n) + n @ model.b_U
    torch.set_grad_enabled(True)
    assert abs(float(total - logits[b, i] @ n)) < 1e-5 * abs(float(logits[b, i] @ n))


def test_layernorm_modes(model, toks):
    """exact/frozen == autograd; approx == exact on {1, x}^⟂; cos(approx, exact) follows the derived law."""
    _, cache = run_cache(model, toks)
    xs = cache["blocks.1.hook_resid_pre"].reshape(-1, 128)
    ln = model.blocks[1].ln1
    g = torch.Generator().manual_seed(0)
    for x in xs:
        y = torch.randn(128, generator=g, dtype=torch.float64)
        _, vjp = torch.autograd.functional.vjp(lambda z: ln(z.view(1, 1, -1)).view(-1), x, y)
        ex = pullback_layernorm(ln, y, x, "exact")
        assert rel(ex, vjp) < 1e-10
        # component of w⊙y orthogonal to {1, x}: approx and exact agree
        basis, _ = torch.linalg.qr(torch.stack([torch.ones(128, dtype=x.dtype), x], 1))
        gy = ln.w * y
        gperp = gy - basis @ (basis.T @ gy)
        yperp = gperp / ln.w
        assert rel(pullback_layernorm(ln, yperp, x, "approx"), pullback_layernorm(ln, yperp, x, "exact")) < 1e-4
    # The exact pullback drops the components of w⊙y along 1 and x_c: for random y, 1 − cos² ≈ Beta(1, (d−2)/2),
    # mean 2/d (cos ≈ √(1−2/d) = 0.992), 5 % quantile of cos ≈ 0.9765, P(cos < 0.98) ≈ 8 %: a minimum over a few
    # dozen draws is not a sound check. Per seed, 20 draws at each of the 24 LN inputs (480 cosines).
    d = xs.shape[-1]
    for seed in range(5):
        yb = torch.randn(20, len(xs), d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        xb = xs.expand_as(yb)
        ap, ex = pullback_layernorm(ln, yb, xb, "approx"), pullback_layernorm(ln, yb, xb, "exact")
        c = ((ap * ex).sum(-1) / (ap.norm(dim=-1) * ex.norm(dim=-1))).reshape(-1)
        msg = (seed, float(c.mean()), float(c.quantile(0.05)))
        assert c.mean() >= 0.985 and c.quantile(0.05) >= 0.965, msg            # seeds 0-19: 0.991-0.993, 0.973-0.978
        assert 0.8 < float((1 - c * c).mean()) * d / 2 < 1.25, msg              # derived 1; seeds 0-19: 0.94-1.10
    scale = cache["blocks.1.ln1.hook_scale"].reshape(-1, 1)[0]
    fz = pullback_layernorm(ln, y, xs[0], "frozen")
    _, vjp = torch.autograd.functional.vjp(lambda z: ((z - z.mean()) / scale) * ln.w + ln.b, xs[0], y)
    assert rel(fz, vjp) < 1e-10


def test_reference_points_at_mean_token_ln_scale():
    """mean_refs / head_source_ref: the reference's LN scale is the mean of the tokens' own scales, read from the
    model's hook_scale (not the smaller scale of the mean vector); the LN output keeps the mean's direction."""
    model = make_model(seed=2)
    toks = torch.randint(0, 200, (6, 12), generator=torch.Generator().manual_seed(4))
    last = torch.tensor([11, 7, 9, 4, 11, 6])
    _, cache = run_cache(model, toks)
    sets = [({k: v[:2] for k, v in cache.items()}, last[:2]), ({k: v[2:] for k, v in cache.items()}, last[2:])]
    refs = mean_refs(model, sets)
    readers = [(f"blocks.{i}.hook_resid_{a}", f"blocks.{i}.ln{k}", getattr(model.blocks[i], f"ln{k}"))
               for i in range(2) for a, k in (("pre", 1), ("mid", 2))]
    readers.append(("blocks.1.hook_resid_post", "ln_final", model.ln_final))
    y = torch.randn(128, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for hk, ln_name, ln in readers:
        sk = f"{ln_name}.hook_scale"
        want = float(at_pos(cache[sk], last).double().mean())                 # the tokens' own LN scales (TL)
        r = refs[hk].double()
        got = float(((r - r.mean()).pow(2).mean() + model.cfg.eps).sqrt())
        assert abs(got - want) < 1e-12 * want, (hk, got, want)
        m = at_pos(cache[hk], last).double().mean(0)
        old = float(((m - m.mean()).pow(2).mean() + model.cfg.eps).sqrt())   # the scale of the mean vector
        assert old < 0.95 * want, (hk, old, want)                             # (what the reference used to be)
        assert abs(float(r.mean() - m.mean())) < 1e-12 and cosine(r - r.mean(), m - m.mean()) > 1 - 1e-12
        assert rel(pullback_layernorm(ln, y, refs[hk], "approx"), ln.w * y / want) < 1e-12
    for layer, head in ((0, 1), (1, 3)):
        j = at_pos(cache[f"blocks.{layer}.attn.hook_pattern"][:, head], last).argmax(-1)
        want = float(cache[f"blocks.{layer}.ln1.hook_scale"][torch.arange(6), j].double().mean())
        r = head_source_ref(model, sets, layer, head)
        assert abs(float(((r - r.mean()).pow(2).mean() + model.cfg.eps).sqrt()) - want) < 1e-12 * want


def test_ln_final_boundary_tangent(model, toks):
    """The decision-boundary point has n·logits = 0 and its normal is the LN-exact gradient there."""
    n = observable(model, [4], [6])
    _, cache = run_cache(model, toks)
    xp, xn = cache["blocks.1.hook_resid_post"][0, -1], cache["blocks.1.hook_resid_post"][1, -1]
    y, info = ln_final_boundary(model, n, xp, xn)
    if info["crossed"]:
        assert info["residual"] < 1e-6
    xt = xn + info["t"] * (xp - xn)
    xt = xt.clone().requires_grad_(True)
    val = (model.unembed(model.ln_final(xt.view(1, 1, -1))).view(-1) @ n)
    (gr,) = torch.autograd.grad(val, xt)
    assert rel(y, gr) < 1e-8


def test_linear_mlp_modes_equal_WinWout():
    """Activation replaced by the identity: point, boundary and linear modes all give W_in W_out y."""
    model = make_model(seed=7)
    L = 1
    model.blocks[L].mlp.act_fn = lambda x: x
    mlp = model.blocks[L].mlp
    g = torch.Generator().manual_seed(2)
    y = torch.randn(128, generator=g, dtype=torch.float64)
    want = mlp.W_in @ (mlp.W_out @ y)
    x0 = torch.randn(128, generator=g, dtype=torch.float64)
    f0 = float((mlp(x0.view(1, 1, -1)).view(-1) @ y).detach())
    step = (abs(f0) + 5.0) / float((want @ want).detach()) * want          # crosses y·MLP(x) = 0 between the two
    x_pos, x_neg = x0 + step, x0 - step
    for mode in ("point", "linear", "boundary"):
        v, info = pullback_mlp(model, L, y, mode=mode, x_ref=x0, x_pos=x_pos, x_neg=x_neg)
        assert rel(v, want) < 1e-6, mode
    _, info = pullback_mlp(model, L, y, mode="boundary", x_pos=x_pos, x_neg=x_neg)
    xt = x_neg + info["t"] * (x_pos - x_neg)
    assert info["crossed"] and abs(float((mlp(xt.view(1, 1, -1)).view(-1) @ y).detach())) < 1e-6


def test_greedy_paths_find_planted_head(toks):
    """A head whose OV circuit writes along W_U n dominates the path-patching ranking and the norm ranking."""
    model = make_model(n_layers=2, attn_only=True, seed=11)
    n = observable(model, [0], [1])
    u = pullback_unembed(model, n)
    with torch.no_grad():   # head (1,2) copies token identity onto u: W_O[h] gets a big rank-1 term
        attn = model.blocks[1].attn
        attn.W_O[2] += 3.0 * torch.outer(torch.ones(32, dtype=u.dtype), u / u.norm()) / 32 ** 0.5
    tp = torch.tensor([[0, 5, 6, 7, 8, 9, 10, 0, 0, 0]] * 2)
    tn = torch.tensor([[1, 5, 6, 7, 8, 9, 10, 1, 1, 1]] * 2)
    _, cp = run_cache(model, tp)
    _, cn = run_cache(model, tn)
    paths, single = greedy_paths(model, n, [(cp, cn)], depth=2, beam=3)
    assert max(single, key=lambda k: abs(single[k])) == "attn1.2"
    assert all(len(p) <= 2 for p, _ in paths) and any(len(p) == 2 for p, _ in paths)


@pytest.mark.parametrize("approx_norm", ["scale", "raw", "unit"])
def test_ln_task_perp_check_uses_configured_norm(approx_norm):
    """ln_task's {1, x}^⟂ check runs the configured approx_norm. On {1, x}^⟂ the exact pullback is w⊙y/s, so the
    relative error is |s·f − 1| with f = 1/s (scale), √d/||x|| (raw), √d (unit), s the model's own hook_scale."""
    from analyses.obsprop.config import Config
    from analyses.obsprop.tasks_extra import ln_task

    model = make_model(seed=6)
    with torch.no_grad():                       # a common offset: ||x||/√d differs from the LN scale
        model.embed.W_E.add_(0.3)
    n = observable(model, [4], [6])
    last = torch.tensor([9, 11, 6])
    toks = torch.randint(0, 200, (6, 12), generator=torch.Generator().manual_seed(8))
    _, cp = run_cache(model, toks[:3])
    _, cn = run_cache(model, toks[3:])
    refs, refs_neg = mean_refs(model, [(cp, last)]), mean_refs(model, [(cn, last)])
    out = ln_task(model, n, refs, refs_neg, [(cp, last)], parse_node(model, "attn1.2"), Config(approx_norm=approx_norm))
    d = 128
    want = {}
    for k in ("scale", "raw", "unit"):
        errs = []
        for layer in range(2):
            x = torch.cat([cp[f"blocks.{layer}.hook_resid_pre"][i, 1:int(last[i]) + 1] for i in range(3)])
            s = torch.cat([cp[f"blocks.{layer}.ln1.hook_scale"][i, 1:int(last[i]) + 1, 0] for i in range(3)])
            f = {"scale": 1 / s, "raw": d ** 0.5 / x.norm(dim=-1), "unit": torch.full_like(s, d ** 0.5)}[k]
            errs.append((s * f - 1).abs().max())
        want[k] = float(max(errs))
    ry = out["random_y"]
    assert want["scale"] < 1e-12 and want["raw"] > 1e-3 and want["unit"] > 1e-3, want
    assert abs(ry["perp_rel_err_max"] - want[approx_norm]) < 1e-8 * max(want[approx_norm], 1.0), (ry, want)
    assert ry["approx_norm"] == approx_norm and ry["n"] == 2 * int(last.sum())
    for k, v in ry["perp_rel_err_max_by_norm"].items():
        assert abs(v - want[k]) < 1e-8 * max(want[k], 1.0), (k, v, want[k])


def test_load_model_converts_to_float64_without_printing(tiny_model, capsys):
    """A float32 model handed to obsprop becomes float64 (its weights too) and nothing is printed on stdout
    (transformer-lens' `to(dtype)` printed "Changing model dtype to torch.float64")."""
    import copy

    from analyses.obsprop.config import Config
    from analyses.obsprop.tasks import load_model

    model = load_model(Config(), copy.deepcopy(tiny_model))
    assert model.cfg.dtype == torch.float64 and model.W_E.dtype == torch.float64
    assert capsys.readouterr().out == ""
