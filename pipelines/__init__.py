"""Orchestration adapters: Prefect flows that chain the genreg stages."""
