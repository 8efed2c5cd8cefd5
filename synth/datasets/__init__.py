"""Datasets: planning a grid (grid), drawing and splitting each point's examples
(splits), keeping them in the database as a cache (cache), the UCI sources (uci), the
task generators (generators), and `synth datasets` (build)."""
