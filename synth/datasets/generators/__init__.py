"""Data generators, one module per input family (binary, decimal, graph, tabular)."""
