"""examples/quickstart.ipynb runs top to bottom (nbclient) on the embedded default, so it cannot rot."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import report_support

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
PLOTLY_MIME = "application/vnd.plotly.v1+json"




def _skip_reason() -> str | None:
    for mod in ("nbclient", "nbformat", "ipykernel"):
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} is not installed (pip install nbclient nbformat ipykernel)"
    from interp import models

    model = os.environ.get("INTERP_NOTEBOOK_MODEL") or models.DEFAULT_MODEL
    if model not in models.embedded_names():
        return f"the embedded model {model!r} is not in data/models (have: {models.embedded_names()})"
    return None


def _outputs(cell) -> list[dict]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") in ("execute_result", "display_data")]


def test_quickstart_notebook_executes(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    if os.environ.get("INTERP_NOTEBOOK_MODEL"):  # run on another embedded suite (papermill-style parameter cell)
        i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        nb.cells.insert(i + 1, nbformat.v4.new_code_cell(f"MODEL = {os.environ['INTERP_NOTEBOOK_MODEL']!r}"))
    env_note = {"TMPDIR": str(tmp_path)}
    old = {k: os.environ.get(k) for k in env_note}
    os.environ.update(env_note)  # the notebook's tempfile.mkdtemp lands under pytest's tmp dir
    try:
        t0 = time.time()
        NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
        seconds = time.time() - t0
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    # the Result displays as its HTML headline table
    result_cell = next(c for c in code if "massive.run(config)" in c.source)
    html = [o["data"]["text/html"] for o in _outputs(result_cell) if "text/html" in o.get("data", {})]
    assert html and "<table" in html[0] and "Massive activations" in html[0]
    # every figure displays inline as a plotly figure (capture plot + each of result.figures())
    figure_outputs = [o for c in code for o in _outputs(c) if PLOTLY_MIME in o.get("data", {})]
    n_result_figures = sum(PLOTLY_MIME in o.get("data", {}) for c in code if "figure.show()" in c.source
                           for o in _outputs(c))
    assert n_result_figures >= 3 and len(figure_outputs) == n_result_figures + 1
    for o in figure_outputs:
        assert o["data"][PLOTLY_MIME]["data"], "an empty figure"
    # the report it wrote exists, with plotly.js next to the pages
    index = next(tmp_path.glob("interp-quickstart-*/report/index.html"))
    assert (index.parent / "plotly.min.js").is_file() and (index.parent / "massive.html").is_file()
    # ... and a real analysis' figures pass the browser checks (when Chromium + Playwright are here)
    support = report_support
    if support.browser_skip_reason() is None:
        assert support.verify_report(index) >= 3
    print(f"notebook ran in {seconds:.1f} s")
