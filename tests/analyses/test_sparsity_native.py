"""The activation-sparsity analysis on natively run Hugging Face decoders, against computations written here.

(a) The consuming matrices equal the HF modules' weights, transposed and concatenated by hand, and map an input to
    the projections' outputs; a converted Llama (transformer-lens, grouped-query attention) gives the same ones.
(b) The held-out loss under TEAL / WINA input rules and under a CETT edit at mlp.hook_post equals a hand-written
    loop of plain `register_forward_pre_hook`s on the HF projections (q/k/v or qkv_proj, o_proj, gate/up or
    gate_up_proj, down_proj), thresholds from float64 quantiles and masks computed in float64.
(c) `run(Config(...))` on a 4-checkpoint ReLU Qwen3 run folder: its census equals a brute-force recomputation
    from the HF model's own MLP (act(gate(x)) · up(x) of the hooked post-attention norm), findings exist, tokens
    per step come from the folder's suite.json; OLMo 2 is refused for the method comparison in one line.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_hf import tiny_config, tiny_hf_model

from analyses.sparsity.weights import PROJECTIONS, consumer_matrix, n_layers
from helpers import VOCAB, tiny_tokenizer
from interp.models.native import NativeModel

QKV = {"phi3": ["qkv_proj"]}
UP = {"phi3": ["gate_up_proj"]}


def _names(kind: str) -> dict[str, list[str]]:
    """The HF modules (inside a block) that read each projection's input."""
    return {"qkv": [f"self_attn.{n}" for n in QKV.get(kind, ["q_proj", "k_proj", "v_proj"])],
            "attn_out": ["self_attn.o_proj"], "mlp_in": [f"mlp.{n}" for n in UP.get(kind, ["gate_proj", "up_proj"])],
            "mlp_out": ["mlp.down_proj"]}


# ------------------------------------------------------------------------------------------------ (a)
@pytest.mark.parametrize("kind", ["qwen3", "llama", "mistral", "phi3", "gemma2"])
def test_consumer_matrices_are_the_hf_weights_transposed(kind):
    hf = tiny_hf_model(kind, seed=3)
    model = NativeModel(hf)
    assert n_layers(model) == hf.config.num_hidden_layers == 2
    x = torch.randn(5, hf.config.hidden_size, generator=torch.Generator().manual_seed(0))
    for layer, block in enumerate(hf.model.layers):
        for proj, names in _names(kind).items():
            mods = [block.get_submodule(n) for n in names]
            want = torch.cat([m.weight.detach() for m in mods], dim=0).T  # HF weight [out, in] -> [in, out]
            got = consumer_matrix(model, layer, proj)
            assert torch.equal(got, want), (kind, layer, proj)
            inp = x if proj in ("qkv", "mlp_in") else torch.randn(5, got.shape[0], generator=torch.Generator()
                                                                  .manual_seed(1))
            with torch.no_grad():  # rows are input channels: x @ M is what the modules compute (no biases here)
                outs = torch.cat([m(inp) - (m.bias if m.bias is not None else 0) for m in mods], dim=-1)
            torch.testing.assert_close(inp @ got.detach(), outs, rtol=1e-5, atol=1e-6)
    if kind == "llama":  # the same weights converted to a HookedTransformer: the same matrices (GQA: K, V as stored)
        import tempfile

        from interp.models import load

        with tempfile.TemporaryDirectory() as d:
            hf.save_pretrained(d, safe_serialization=True)
            tl = load(d)
        assert type(tl).__name__ == "HookedTransformer"
        for layer in range(2):
            for proj in PROJECTIONS:
                torch.testing.assert_close(consumer_matrix(tl, layer, proj), consumer_matrix(model, layer, proj),
                                           rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ (b)
def _hand_loss(hf, blocks: torch.Tensor, masks: dict[tuple[int, str], object], kind: str) -> float:
    """Mean next-token loss (float64 log-softmax) with pre-hooks that multiply each projection's input by its mask."""
    handles = []
    for (layer, proj), mask in masks.items():
        for name in _names(kind)[proj]:
            handles.append(hf.model.layers[layer].get_submodule(name).register_forward_pre_hook(
                lambda m, args, mask=mask: (args[0] * mask(args[0]).to(args[0].dtype),)))
    try:
        with torch.no_grad():
            logits = hf(input_ids=blocks, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    lp = torch.log_softmax(logits.double(), -1)[:, :-1]
    return float(-lp.gather(-1, blocks[:, 1:, None]).mean())


def _hand_inputs(hf, blocks: torch.Tensor, kind: str) -> dict[tuple[int, str], torch.Tensor]:
    """Each projection's input as rows [n, channels] in float64, recorded by plain pre-hooks on the first reader."""
    seen, handles = {}, []
    for layer, block in enumerate(hf.model.layers):
        for proj, names in _names(kind).items():
            handles.append(block.get_submodule(names[0]).register_forward_pre_hook(
                lambda m, args, key=(layer, proj): seen.__setitem__(key, args[0].detach().double().reshape(
                    -1, args[0].shape[-1]))))
    try:
        with torch.no_grad():
            hf(input_ids=blocks, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return seen


def _hand_norms(hf, layer: int, proj: str, kind: str) -> torch.Tensor:
    """c_j = ‖W[:, j]‖₂ over every matrix that reads input channel j (HF weight [out, in]: norm over dim 0)."""
    ws = [hf.model.layers[layer].get_submodule(n).weight.detach().double() for n in _names(kind)[proj]]
    return torch.cat(ws, dim=0).norm(dim=0)


@pytest.fixture(scope="module")
def native_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparsity-native")
    out = {}
    for kind in ("qwen3", "phi3"):
        hf = tiny_hf_model(kind, seed=5)
        hf.save_pretrained(root / kind, safe_serialization=True)
        out[kind] = root / kind
    return out


@pytest.mark.parametrize("kind", ["qwen3", "phi3"])
def test_input_rules_and_cett_equal_hand_written_pre_hooks(native_folders, kind):
    from transformers import AutoModelForCausalLM

    from analyses.sparsity.config import Config
    from analyses.sparsity.forward import hook_name
    from analyses.sparsity.studies import _calibration, _edits_at, _loss, _mlp_state, _rules
    from analyses.sparsity.suites import SuiteData
    from interp.models import load

    folder = str(native_folders[kind])
    g = torch.Generator().manual_seed(7)
    calib, evals = torch.randint(3, VOCAB, (4, 24), generator=g), torch.randint(3, VOCAB, (3, 24), generator=g)
    cfg = Config(model=folder, suites=[folder], batch_size=2)
    suite = SuiteData(folder, [-1], 1, 0, evals, calib)
    model = load(folder)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    hooks = [hook_name(p, li) for li in range(2) for p in PROJECTIONS]
    rows = _hand_inputs(hf, calib, kind)
    got_calib = _calibration(cfg, model, suite, hooks)
    for (layer, proj), x in rows.items():  # the analysis' calibration rows are the HF modules' inputs
        torch.testing.assert_close(got_calib[hook_name(proj, layer)].reshape(x.shape), x, rtol=0, atol=0)
    dense = _loss(model, evals, {}, cfg.batch_size)
    assert dense == pytest.approx(_hand_loss(hf, evals, {}, kind), rel=1e-6)
    s = 0.5
    for method in ("teal", "wina"):
        masks = {}
        for (layer, proj), x in rows.items():
            c = _hand_norms(hf, layer, proj, kind) if method == "wina" else torch.ones(x.shape[1], dtype=torch.float64)
            t = float(torch.quantile((x.abs() * c).flatten(), s))
            masks[(layer, proj)] = lambda a, t=t, c=c: (a.double().abs() * c) > t
        got = _loss(model, evals, _rules(model, got_calib, s, method, 0.5), cfg.batch_size)
        want = _hand_loss(hf, evals, masks, kind)
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7), method
        assert abs(got - dense) > 1e-4  # half the inputs skipped: the loss moves (random weights: either way)
    # CETT at mlp.hook_post: τ_ℓ from CETT(τ_ℓ) = c on the calibration activations, zero |a_i|·‖W_out[i]‖ < τ_ℓ
    from analyses.sparsity.metrics import cett_threshold

    _, mlp_hooks, mlp_rows, w_outs, dense2 = _mlp_state(cfg, suite, -1)
    assert dense2 == pytest.approx(dense, rel=1e-12)
    c_val = 0.2
    masks = {}
    for layer in range(2):
        w = hf.model.layers[layer].mlp.down_proj.weight.detach().double().T  # [d_mlp, d_model]
        a = rows[(layer, "mlp_out")]
        torch.testing.assert_close(w_outs[f"blocks.{layer}.mlp.hook_post"], w, rtol=0, atol=0)
        tau = cett_threshold(a, w, c_val, iters=30)
        norms = w.norm(dim=1)
        masks[(layer, "mlp_out")] = lambda x, tau=tau, norms=norms: (x.double().abs() * norms) >= tau
    got = _loss(model, evals, _edits_at(c_val, mlp_hooks, mlp_rows, w_outs), cfg.batch_size)
    assert got == pytest.approx(_hand_loss(hf, evals, masks, kind), rel=1e-6, abs=1e-7)
    assert abs(got - dense) > 1e-6


# ------------------------------------------------------------------------------------------------ (c)
STEPS = (10, 100, 1000, 5000)


@pytest.fixture(scope="module")
def relu_run(tmp_path_factory):
    """A 'training run' of a ReLU Qwen3: four checkpoint folders (different seeds) and the run's suite.json."""
    from transformers import AutoModelForCausalLM

    run = tmp_path_factory.mktemp("runs") / "relu-qwen3"
    tok = tiny_tokenizer()
    for i, step in enumerate(STEPS):
        torch.manual_seed(i)
        cfg = tiny_config("qwen3")
        cfg.hidden_act = "relu"
        AutoModelForCausalLM.from_config(cfg).save_pretrained(run / f"step{step}", safe_serialization=True)
        tok.save_pretrained(run / f"step{step}")
    (run / "suite.json").write_text(json.dumps({"train": {"batch": 4, "ctx": 64, "warmup": 0}}))
    return run


@pytest.fixture(scope="module")
def run_result(relu_run):
    from analyses.sparsity import Config, run

    cfg = Config(model=str(relu_run), suites=[str(relu_run)], size_suites=[], n_tokens=256, calib_tokens=256,
                 ctx=32, ppl_tolerances=[0.05], last_k=2, search_eps=1e-2, sparsities=[0.4, 0.5], per_layer=False,
                 batch_size=8)
    return cfg, run(cfg)


def test_run_on_a_native_checkpoint_folder_census_equals_brute_force(relu_run, run_result):
    from transformers import AutoModelForCausalLM

    from interp.models import load_tokenizer
    from interp.sources import token_blocks

    cfg, res = run_result
    name = str(relu_run)
    assert list(res.arrays[f"{name}.steps"]) == list(STEPS)
    info = res.details["suites"][name]
    assert info["tokens_per_step"] == 4 * 64 and info["activation"] == "relu"
    blocks = token_blocks(cfg.data, load_tokenizer(name), ctx=cfg.ctx,
                          n_tokens=cfg.n_tokens + cfg.calib_tokens)[: cfg.n_tokens // cfg.ctx]
    i = 2
    hf = AutoModelForCausalLM.from_pretrained(relu_run / f"step{STEPS[i]}", dtype=torch.float32).eval()
    normed, handles = {}, []
    for layer, block in enumerate(hf.model.layers):
        handles.append(block.post_attention_layernorm.register_forward_hook(
            lambda m, args, out, layer=layer: normed.__setitem__(layer, out.detach())))
    with torch.no_grad():
        hf(input_ids=blocks, use_cache=False)
        for h in handles:
            h.remove()
        for layer, block in enumerate(hf.model.layers):
            mlp = block.mlp
            a = torch.relu(mlp.gate_proj(normed[layer])) * mlp.up_proj(normed[layer])  # Qwen3MLP's activation
            assert res.arrays[f"{name}.nnz"][i, layer] == pytest.approx(float((a != 0).double().mean()), abs=1e-12)
            for eps in cfg.fat_eps:
                assert res.arrays[f"{name}.fat_{eps:g}"][i, layer] == pytest.approx(
                    float((a.abs() > eps).double().mean()), abs=1e-12)
    assert 0.3 < res.arrays[f"{name}.nnz"].mean() < 0.7  # random ReLU gates: about half the activations fire
    assert res.arrays[f"{name}.ratio_ppl_0.05"].shape == (len(STEPS), 2)
    methods = res.details["methods"]
    assert methods["step"] == STEPS[-1] and set(methods["all_layers"]["0.5"]) == {"teal", "wina", "rsparse", "cats"}
    assert all(math.isfinite(v) for row in methods["all_layers"].values() for v in row.values())
    assert len(res.findings) == 8 and all(f.consistent() for f in res.findings)
    measured = {f.key for f in res.findings if f.measured is not None}
    assert {"relu_nnz_final", "teal_ppl_ratio_0.4", "wina_minus_teal_0.5"} <= measured  # (random weights: no trend)
    assert 0 < info["c_star"]["0.05"] < 1 and 0 <= res.arrays[f"{name}.ratio_ppl_0.05"].min() <= 1
    assert res.summary["relu_nnz_final"] == pytest.approx(float(res.arrays[f"{name}.nnz"][-1].mean()))
    assert res.provenance["step"] == STEPS[-1]


def test_olmo2_is_refused_for_the_methods_in_one_line_and_a_single_folder_is_no_suite(tmp_path):
    from analyses.sparsity import Config, run
    from analyses.sparsity.suites import DEFAULT_TOKENS_PER_STEP, steps_of, tokens_per_step
    from interp.errors import ConfigError

    folder = str(tmp_path / "olmo2")
    tiny_hf_model("olmo2").save_pretrained(folder, safe_serialization=True)
    tiny_hf_model("qwen3").save_pretrained(tmp_path / "qwen3", safe_serialization=True)
    with pytest.raises(ConfigError) as err:
        run(Config(model=folder, suites=["toy-pythia-relu"]))
    msg = str(err.value)
    assert "\n" not in msg and "olmo2" in msg and "ln1.hook_normalized" in msg and "residual stream" in msg
    assert steps_of(folder, single_ok=True) == [-1]  # the methods' model may be one folder (loaded with step=None)
    with pytest.raises(ConfigError, match="one model, not a suite"):
        steps_of(folder, single_ok=False)
    with pytest.raises(ConfigError, match="one model, not a suite"):  # refused before any checkpoint is loaded
        run(Config(model="toy-pythia-relu", suites=[str(tmp_path / "qwen3")]))
    assert tokens_per_step(Config(), {}) == DEFAULT_TOKENS_PER_STEP == 2048
    assert tokens_per_step(Config(tokens_per_step=7), {"tokens_per_step": 9}) == 7
    assert tokens_per_step(Config(), {"tokens_per_step": 9}) == 9


def test_tokens_per_step_from_a_trainer_state(tmp_path):
    """A run folder of transformers' Trainer checkpoints and no suite.json: D's tokens per step come from the last
    checkpoint's trainer_state.json (num_input_tokens_seen / step); without that count, the stated default."""
    import json

    from analyses.sparsity import Config
    from analyses.sparsity.suites import DEFAULT_TOKENS_PER_STEP, suite_info, tokens_per_step

    for step in (10, 20):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "config.json").write_text("{}")
    log = [{"step": 10, "loss": 3.0, "num_input_tokens_seen": 40960}, {"step": 20, "num_input_tokens_seen": 81920},
           {"step": 20, "train_runtime": 1.0}]
    state = tmp_path / "checkpoint-20" / "trainer_state.json"
    state.write_text(json.dumps({"global_step": 20, "log_history": log}))
    assert tokens_per_step(Config(), suite_info(str(tmp_path))) == 4096
    assert tokens_per_step(Config(tokens_per_step=100), suite_info(str(tmp_path))) == 100  # the option wins
    state.write_text(json.dumps({"global_step": 20, "log_history": [{"step": 20, "loss": 2.0}]}))
    assert tokens_per_step(Config(), suite_info(str(tmp_path))) == DEFAULT_TOKENS_PER_STEP
