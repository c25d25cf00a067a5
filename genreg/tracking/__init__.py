"""MLflow tracking of runs: between the stages below and the pipelines and CLI above."""
