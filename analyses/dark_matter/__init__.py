"""SAE dark matter (Engels, Riggs, Tegmark 2024): how much of an SAE's error is linearly predictable from x.

    from analyses.dark_matter import Config, run
    res = run(Config(layer=2))            # shipped SAEs on the embedded default model
    res.summary, res.figures()
"""

from analyses.dark_matter.config import Config
from analyses.dark_matter.pipeline import run
from analyses.dark_matter.result import DarkMatterResult

__all__ = ["Config", "run", "DarkMatterResult"]
