"""`interp analyze NAME --set KEY=VALUE`: values are converted to the field's type, bad ones are one-line errors."""

import argparse

import pytest

from analyses import dark_matter, massive, obsprop
from apps.cli import main
from apps.config_args import config_from_args
from interp.errors import ConfigError


def _config(config_cls, *overrides):
    return config_from_args(config_cls, argparse.Namespace(), list(overrides))


def test_set_values_take_the_field_type():
    cfg = _config(massive.Config, "checkpoints=512", "n_inputs=4", "fit=false", "abs_thresh=1e3", "model=123",
                  "predictor_suites=a,b")
    assert cfg.checkpoints == [512] and cfg.n_inputs == 4 and cfg.fit is False
    assert cfg.abs_thresh == 1000.0 and cfg.model == "123" and cfg.predictor_suites == ["a", "b"]
    assert _config(massive.Config, "checkpoints=0,8,512").checkpoints == [0, 8, 512]
    assert _config(massive.Config, "checkpoints=[0, 8]").checkpoints == [0, 8]
    assert _config(massive.Config, "checkpoints=").checkpoints == []
    dm = _config(dark_matter.Config, "step=3000", "synthetic_sigmas=0,1.5")
    assert dm.step == 3000 and dm.synthetic_sigmas == [0.0, 1.5]
    assert _config(obsprop.Config, "ln_mode=exact").ln_mode == "exact"  # a Literal field takes its choices only
    with pytest.raises(ConfigError, match="ln_mode"):
        _config(obsprop.Config, "ln_mode=exactly")


@pytest.mark.parametrize("item, message", [
    ("n_inputs=abc", "--set n_inputs='abc': expected int"),
    ("n_inputs=1.5", "--set n_inputs='1.5': expected int"),
    ("checkpoints=0,8,x", "--set checkpoints='0,8,x': expected list of int"),
    ("checkpoints={\"a\": 1}", "--set checkpoints='{\"a\": 1}': expected list of int"),
    ("fit=maybe", "--set fit='maybe': expected bool"),
    ("steps", "--set 'steps' is not of the form KEY=VALUE"),
    ("nope=1", "--set 'nope=1' does not name a Config field"),
])
def test_bad_set_values_are_one_line_exit_2(capsys, item, message):
    rc = main(["analyze", "massive", "--set", item])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert err[0].startswith(f"interp: error: {message}")
    assert len(err) == 2 and err[1].startswith("  hint:") and "Traceback" not in "\n".join(err)


def test_bad_set_value_error_names_the_fix():
    with pytest.raises(ConfigError) as e:
        _config(massive.Config, "checkpoints=512,x")
    assert e.value.hint == "e.g. --set checkpoints=1,2"


@pytest.mark.parametrize("kw", [{"n_inputs": -3}, {"n_inputs": 0}, {"top_k": 0}])
def test_massive_refuses_non_positive_sizes(kw):
    cfg = massive.Config(checkpoints=[512], fit=False, intervene=False, compare_alternatives=False, **kw)
    with pytest.raises(ConfigError, match=f"{next(iter(kw))} must be >= 1"):
        massive.run(cfg)


def test_negative_n_inputs_on_the_cli_is_exit_2(tmp_path, capsys):
    rc = main(["analyze", "massive", "--n-inputs", "-3", "--checkpoints", "512", "--no-fit", "--no-intervene",
               "--out", str(tmp_path / "r")])
    assert rc == 2 and capsys.readouterr().err.startswith("interp: error: n_inputs must be >= 1, got -3")
    assert not (tmp_path / "r").exists()


def test_analyze_refuses_to_replace_another_analysis_result(tmp_path, capsys):
    """`interp analyze hashcodes --out F` where F holds a massive result used to replace it (exit 0): refused before
    the run, files untouched; --out naming a file is refused before the run too."""
    import hashlib
    import json

    from apps.cli import main

    folder = tmp_path / "m1"
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps({"analysis": "massive", "summary": {}}))
    before = hashlib.sha256((folder / "result.json").read_bytes()).hexdigest()
    assert main(["analyze", "hashcodes", "--out", str(folder)]) == 2
    assert "holds a massive result" in capsys.readouterr().err
    assert hashlib.sha256((folder / "result.json").read_bytes()).hexdigest() == before
    (tmp_path / "file").write_text("x")
    assert main(["analyze", "massive", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_config_types_are_checked_in_python_too():
    """A Config built in Python is checked against its annotations: no traceback deep in the run, no string split
    into characters; sizes below their least value are refused."""
    import pytest

    from analyses import hashcodes, lib, massive
    from interp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"Config.n_inputs must be int, got '1'"):
        massive.Config(n_inputs="1").validate()
    with pytest.raises(ConfigError, match=r"Config.checkpoints must be list of int"):
        massive.Config(checkpoints=3000).validate()
    with pytest.raises(ConfigError, match=r"Config.node_layers must be list of str"):
        lib.Config(node_layers="ln1.0").validate()
    with pytest.raises(ConfigError, match="n_samples must be >= 0"):
        lib.Config(n_samples=-5).validate()
    with pytest.raises(ConfigError, match="widths is empty"):
        hashcodes.Config(widths=[]).validate()
    with pytest.raises(ConfigError, match="lm_test_fraction must be in"):
        hashcodes.Config(lm_test_fraction=1.5).validate()
    massive.Config(persistence=1).validate()  # an int where a float is annotated is fine


def test_context_layer_and_sae_index_are_checked_against_the_model():
    """ctx beyond the model's context and a layer it does not have are one-line errors (they were shape tracebacks
    or a misleading "no SAE for blocks.9"); an index entry that does not describe its SAE files is refused."""
    import json
    from pathlib import Path

    import pytest

    from analyses.dark_matter.studies import _check_entry
    from interp.config_checks import check_context, check_layer
    from interp.errors import ConfigError
    from interp.models import load
    from interp.saes import load_sae

    model = load("toy-pythia-4l")
    with pytest.raises(ConfigError, match="ctx=1000 is longer than the model's context of 256"):
        check_context(model, 1000)
    with pytest.raises(ConfigError, match="layer=9, but the model has 4 layers"):
        check_layer(model, 9)
    check_context(model, 256), check_layer(model, 3)
    folder = Path(__file__).resolve().parents[2] / "data" / "saes" / "toy-pythia-4l"
    entry = next(e for e in json.loads((folder / "index.json").read_text())["saes"] if e["hook"].endswith("resid_post"))
    sae = load_sae(folder / entry["path"] if "path" in entry else folder / entry["name"])
    _check_entry(entry, sae)
    with pytest.raises(ConfigError, match="its files say d_sae"):
        _check_entry({**entry, "d_sae": 9999}, sae)
    with pytest.raises(ConfigError, match="its files say"):
        _check_entry({**entry, "hook": "blocks.1.hook_resid_post"}, sae)


def test_massive_top_k_beyond_one_input_is_refused():
    import pytest
    import torch

    from analyses.massive.method import massive_stats
    from interp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"top_k=100000 is not in \[1, 12\]"):
        massive_stats(torch.randn(2, 1, 3, 4), k=100000)
    assert massive_stats(torch.randn(2, 1, 3, 4), k=12)["top"].shape[-1] == 12


def test_options_that_would_be_ignored_are_refused():
    import pytest

    from analyses import hashcodes, lib
    from interp.errors import ConfigError

    with pytest.raises(ConfigError, match="sweep=full sets widths"):
        hashcodes.Config(sweep="full", widths=[2]).validate()
    hashcodes.Config(sweep="full").validate()
    with pytest.raises(ConfigError, match="does not apply to the shipped mod-add models"):
        lib.Config(step=12345).validate()
