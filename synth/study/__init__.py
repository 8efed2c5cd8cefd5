"""Studies: a matrix of systems x prompt wordings x seeds over one grid, each cell a run."""
