"""Studies that re-run the experiments of the source documents and write their reports."""
