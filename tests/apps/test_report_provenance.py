"""Provenance names the checkpoint step that really ran (configs say -1/None for "final") and the token source."""

import pytest

from apps.report.provenance import provenance_rows
from interp import models


def _final_step() -> int | None:
    try:
        steps = models.checkpoints(models.DEFAULT_MODEL)
    except Exception:
        return None
    return steps[-1] if steps else None


FINAL = _final_step()
needs_embedded = pytest.mark.skipif(FINAL is None, reason="embedded default suite not present")


def test_resolved_step():
    assert models.resolved_step("no/such/folder", None) is None
    assert models.resolved_step(None, -1) is None
    assert models.resolved_step("anything", 512) == 512


@needs_embedded
def test_resolved_step_of_the_embedded_suite():
    assert models.resolved_step(models.DEFAULT_MODEL, -1) == FINAL
    assert models.resolved_step(models.DEFAULT_MODEL, None) == FINAL
    assert models.resolved_step(models.DEFAULT_MODEL, 8) == 8


def test_rows_name_tokens_source_as_the_token_source():
    rows = dict(provenance_rows({"model": "m", "checkpoint": 3000, "tokens_source": "embedded", "n_tokens": 64}))
    assert rows["checkpoint"] == "3000" and rows["token source"] == "embedded" and rows["token count"] == "64"
    assert "tokens source" not in rows  # not repeated among the generic rows


@needs_embedded
def test_obsprop_provenance_names_the_final_step(monkeypatch):
    """run() with step=-1 loads the final checkpoint; the tasks are stubbed (only the provenance is under test)."""
    from analyses import obsprop
    from analyses.obsprop import studies

    def stub_tasks(cfg, model):
        return {"model": models.model_id(model)}, {}, {}, {"n_heldout_tokens": 2048}

    monkeypatch.setattr(studies, "run_tasks", stub_tasks)
    res = obsprop.run(obsprop.Config(step=-1))
    assert res.summary["model"] == f"{models.DEFAULT_MODEL}@step{FINAL}"  # what was loaded
    assert res.provenance["step"] == FINAL
    assert dict(provenance_rows(res.provenance))["checkpoint"] == str(FINAL)
    user = obsprop.run(obsprop.Config(step=-1), model=models.load(models.DEFAULT_MODEL, step=8, dtype="float64"))
    assert user.provenance["step"] == 8  # a user's model: the step its name carries


@needs_embedded
def test_dark_matter_provenance_names_the_final_step_and_data():
    from analyses import dark_matter

    res = dark_matter.run(dark_matter.Config(n_tokens=1024, ctx=64, pursuit_tokens=0, synthetic_tokens=0,
                                             downstream_blocks=0, trace_tokens=20))
    assert res.provenance["step"] == FINAL
    rows = dict(provenance_rows(res.provenance))
    assert rows["checkpoint"] == str(FINAL) and rows["token source"] == "embedded"
    assert rows["token count"] == str(res.summary["n_tokens"])
