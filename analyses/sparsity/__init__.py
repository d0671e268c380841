"""Activation sparsity across training and the speed it buys (Lazy Neuron, Sparsing Law, TEAL, CATS, WINA, R-Sparse).

The maths is in `metrics` (nonzero fraction, FAT-ε, CETT and its threshold), `search` (CETT-PPL-p%, Algorithm 1),
`trends` (the two activation-ratio laws, bounded multi-start fits) and `methods` (TEAL thresholds and greedy
allocation, CATS, WINA, R-Sparse).
"""
