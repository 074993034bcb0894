"""Data sources: each has .sample(n) -> (n, ...) tensor on its device."""
