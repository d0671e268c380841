"""SAE dark matter (Engels, Riggs, Tegmark 2024): how much of an SAE's error is linearly predictable from x.

    from analyses.dark_matter import Config, run
    res = run(Config(layer=2))            # shipped SAEs on the embedded default model
    res.summary, res.figures()
"""

from analyses.dark_matter.config import Config
from analyses.dark_matter.result import DarkMatterResult
from analyses.dark_matter.studies import cache_hooks, run
from interp.analysis import Analysis

ANALYSIS = Analysis(
    name="dark-matter", title=DarkMatterResult.title, config=Config, run=run, result=DarkMatterResult,
    quick={"n_tokens": 8192, "pursuit_tokens": 256, "synthetic_tokens": 4096, "downstream_blocks": 8,
           "trace_tokens": 60},
    cache_hooks=cache_hooks,
)

__all__ = ["ANALYSIS", "Config", "run", "DarkMatterResult"]
