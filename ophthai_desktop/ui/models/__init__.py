"""Qt item models: precomputed display rows, trivial ``data()``."""
