"""Code that runs inside the MLflow server process (and its workers)."""
