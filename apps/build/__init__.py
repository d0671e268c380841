"""Builders of the shipped models that the analyses read: where the embedded default is made, beside `interp toy`.

    python -m apps.build.massive_suite   the toy-pythia-massive suite (massive activations emerge; GPU)
    python -m apps.build.modadd          the modular-addition transformers of the LIB analysis (data/lib)
    python -m apps.build.saes            the SAE sweep of the dark-matter analysis (data/saes/<model>)

They live in `apps` because they use both layers: `interp` to load, extract and train, and an analysis's own
definitions (the mod-add task, the SAE index format, the massive-activation statistic) to make what it reads.
"""
