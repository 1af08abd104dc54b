"""Prefect tasks and flows composing the packages; deployments, event triggers and the CLI."""
