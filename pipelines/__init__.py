"""Prefect flows, one module per flow family, their thin tasks, the runtime they share, and the CLI."""
