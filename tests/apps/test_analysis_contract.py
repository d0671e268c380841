"""The analysis contract (interp.analysis): one registry that the CLI, the demo and the report read; findings whose
verdicts follow from their numbers; help text from the Config's field docs; typed provenance."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pytest

from analyses import REGISTRY
from apps.cli import main
from apps.config_args import add_config_options
from interp.analysis import Analysis, AnalysisConfig, Provenance
from interp.errors import ConfigError
from interp.results import Finding, Result


@dataclass
class SixConfig(AnalysisConfig):
    """A throw-away analysis that sums the numbers 0 .. n-1."""

    model: str = "none"
    n: int = 3
    """How many numbers to sum."""
    mode: Literal["plain", "squared"] = "plain"  # sum the numbers or their squares

    def check(self) -> None:
        if self.n < 1:
            raise ConfigError(f"n must be >= 1, got {self.n}", hint="use n=3")


class SixResult(Result):
    analysis: ClassVar[str] = "toy-six"
    title: ClassVar[str] = "A throw-away sixth analysis"
    captions: ClassVar[dict[str, str]] = {"numbers": "The numbers that were summed."}

    def figures(self) -> dict[str, Any]:
        import plotly.graph_objects as go

        return {"numbers": go.Figure(go.Bar(y=self.arrays["x"]))}


def six_run(config: SixConfig | None = None) -> SixResult:
    cfg = (config or SixConfig()).validate()
    x = np.arange(cfg.n, dtype=np.float64) ** (2 if cfg.mode == "squared" else 1)
    total = float(x.sum())
    finding = Finding.compare("the total reaches n", total, ">=", cfg.n, paper="made up for the test", key="total")
    return SixResult(summary={"total": total}, arrays={"x": x}, config=cfg.to_dict(),
                     provenance=Provenance.collect(model=cfg.model, data="arange").to_dict(), findings=[finding])


SIX = Analysis(name="toy-six", title=SixResult.title, config=SixConfig, run=six_run, result=SixResult,
               quick={"n": 2})


@pytest.fixture
def sixth():
    REGISTRY.register(SIX)
    yield SIX
    REGISTRY.unregister(SIX.name)


def test_a_sixth_analysis_through_the_registry_alone(sixth, tmp_path, capsys):
    """One record registered: the CLI lists it, runs it with its own options, the demo's quick run takes its quick
    sizes, and the report shows its findings and captions."""
    from apps.demo import run_demo

    assert main(["analyze", "--help"]) == 0
    assert "toy-six" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["analyze", "toy-six", "--help"])
    text = capsys.readouterr().out
    assert "How many numbers to sum." in text and "{plain,squared}" in text
    out = tmp_path / "six"
    assert main(["analyze", "toy-six", "--out", str(out), "--n", "5", "--mode", "squared"]) == 0
    printed = capsys.readouterr().out
    assert "Held: the total reaches n" in printed and str(out / "result.json") in printed
    doc = json.loads((out / "result.json").read_text())
    assert doc["summary"]["total"] == 0 + 1 + 4 + 9 + 16 and doc["findings"][0]["verdict"] == "held"
    with pytest.raises(SystemExit) as exit_info:  # a choice it does not have: argparse's usage error
        main(["analyze", "toy-six", "--out", str(out), "--mode", "cubed"])
    assert exit_info.value.code == 2 and "invalid choice: 'cubed'" in capsys.readouterr().err

    assert run_demo(tmp_path / "demo", quick=True, only=["toy-six"]) == 0
    back = SixResult.load(tmp_path / "demo" / "toy-six")
    assert back.summary["total"] == 1.0 and back.findings[0].verdict == "did not hold"  # 0 + 1 < n = 2
    index = (tmp_path / "demo" / "report" / "index.html").read_text()
    assert "A throw-away sixth analysis" in index and "0 of 1 checkable claims held" in index
    page = next(p for p in (tmp_path / "demo" / "report").glob("*.html") if p.name != "index.html").read_text()
    assert "Findings" in page and "The numbers that were summed." in page


@pytest.mark.parametrize("name", REGISTRY.names())
def test_analyze_help_describes_every_option(name):
    """`interp analyze NAME --help`: every Config field's option has a description, not just its default."""
    record = REGISTRY.get(name)
    parser = argparse.ArgumentParser()
    add_config_options(parser, record.config)
    options = [a for a in parser._actions if a.dest not in ("help",)]
    assert len(options) == len(record.config.__dataclass_fields__)
    for action in options:
        assert action.help and not action.help.startswith("(default"), (name, action.dest, action.help)


def test_finding_verdicts_follow_their_numbers():
    held = Finding.compare("x", 0.93, ">=", 0.9, paper="0.9")
    missed = Finding.compare("x", 0.31, "between", [0.4, 0.6], paper="about half")
    absent = Finding.compare("x", math.nan, "<", 1.0, paper="p", why_not_applicable="study skipped")
    assert (held.verdict, missed.verdict, absent.verdict) == ("held", "did not hold", "not applicable")
    assert all(f.consistent() for f in (held, missed, absent))
    forged = Finding(claim="x", measured=0.5, paper="p", verdict="held", op=">", threshold=0.9)
    assert not forged.consistent()  # a verdict that disagrees with its number is caught
    assert "study skipped" in absent.sentence() and "Here 0.93" in held.sentence()
    assert Finding.from_dict(json.loads(json.dumps(missed.to_dict()))) == missed


def test_provenance_reads_older_spellings_and_config_round_trips():
    old = {"checkpoint": 3000, "tokens_source": "embedded", "n_heldout_tokens": 10, "hook": "blocks.1.hook_z",
           "versions": {"torch": "2"}, "machine": "x", "other": 1}
    prov = Provenance.from_dict(old)
    assert (prov.step, prov.data, prov.n_tokens, prov.hooks) == (3000, "embedded", 10, ["blocks.1.hook_z"])
    assert prov.environment == {"versions": {"torch": "2"}, "machine": "x"} and prov.extra == {"other": 1}
    cfg = SixConfig(n=4, mode="squared")
    assert SixConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="no field"):
        SixConfig.from_dict({"n": 4, "steps": [1]})
    with pytest.raises(ConfigError, match="mode"):
        SixConfig(mode="cubed").validate()
    assert SixConfig.field_help()["mode"] == "sum the numbers or their squares"
    assert SixConfig.choices("mode") == ("plain", "squared") and SixConfig(step=-1).load_step is None
