"""The analyses, one subpackage per paper; each exports `ANALYSIS` (name, Config, run, Result, quick sizes).

`REGISTRY` is the one list the command line, the demo, the report builder and the tests read. A new analysis is
one folder here and one line below.
"""

from interp.analysis import Registry

REGISTRY = Registry({
    "dark-matter": "analyses.dark_matter",
    "lib": "analyses.lib",
    "obsprop": "analyses.obsprop",
    "massive": "analyses.massive",
    "hashcodes": "analyses.hashcodes",
    "sae-evals": "analyses.sae_evals",
    "sparsity": "analyses.sparsity",
})

__all__ = ["REGISTRY"]
