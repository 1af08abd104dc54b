"""Flywheel core: the record schema, the Parquet store, the stage runner, the pool, settings, releases and exports."""
