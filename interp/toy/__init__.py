"""The embedded toy suite: a corpus with planted features, its tokenizer, and Pythia-style training.

Modules (one job each):
    vocab     word lists and the planted ground truth (features.json)
    grammar   document grammars (stories, Python-like and C-like code) with tagged feature positions
    corpus    seeded train / held-out / probe splits and the data/corpus files
    tokenizer byte-level BPE training and saving (data/tokenizer)
    build     `python -m interp.toy.build`: tokenizer + corpus files
    train     `python -m interp.toy.train` / `train_suite(...)`: GPT-NeoX suites with Pythia's checkpoint schedule
    evaluate  probe accuracy and learned occupation skew of a model
"""
