"""`interp saes train` on a cache of a tiny model: SAE folders and an index.json that the evals read back, with
numbers recomputed here from the saved weights; `interp saes eval` is the sae-evals analysis."""

from __future__ import annotations

import json

import pytest

from apps.cli import main


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, tiny_neox_dir):
    out = tmp_path_factory.mktemp("cache") / "c"
    assert main(["extract", "--model", str(tiny_neox_dir), "--hooks", "blocks.1.hook_resid_post", "--data",
                 "embedded", "--tokens", "4096", "--ctx", "32", "--out", str(out), "--quiet"]) == 0
    return out


def test_train_writes_saes_and_an_index_the_evals_read(tiny_cache, tiny_neox_dir, tmp_path, capsys):
    from interp.cache import open_cache
    from interp.saes import load_sae, reconstruct

    out = tmp_path / "saes"
    assert main(["saes", "train", "--cache", str(tiny_cache), "--hook", "blocks.1.hook_resid_post", "--widths", "2",
                 "4", "--k", "4", "--training-tokens", "4096", "--batch-size", "256", "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    assert [e["d_sae"] for e in index["saes"]] == [2 * 32, 4 * 32] and index["hooks"]["resid"] == \
        "blocks.1.hook_resid_post" and {e["component"] for e in index["saes"]} == {"resid"}
    x = open_cache(tiny_cache).read("blocks.1.hook_resid_post").float()
    for e in index["saes"]:
        sae = load_sae(out / e["path"])
        rec, l0 = reconstruct(sae, x)
        fvu = float(((x - rec) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        assert e["fvu_train"] == pytest.approx(fvu, rel=1e-5) and float(l0.max()) <= 4
        assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    capsys.readouterr()
    assert main(["saes", "eval", "--model", str(tiny_neox_dir), "--saes", str(out), "--n-tokens", "256", "--ctx",
                 "32", "--out", str(tmp_path / "evals"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "evals" / "result.json").read_text())
    assert doc["analysis"] == "sae-evals" and len(doc["details"]["saes"]) == 2 and len(doc["findings"]) == 4
    printed = capsys.readouterr().out
    assert printed.count("claim") == 0 and sum(v in printed for v in ("Held:", "Did not hold:", "Not applicable:")) >= 1


def test_train_refuses_a_hook_the_cache_lacks(tiny_cache, tmp_path, capsys):
    assert main(["saes", "train", "--cache", str(tiny_cache), "--hook", "blocks.0.hook_mlp_out", "--widths", "2",
                 "--out", str(tmp_path / "s")]) == 2
    assert "has no hook blocks.0.hook_mlp_out" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before anything was written
