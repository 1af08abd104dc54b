"""Flywheel core: the record schema, the Parquet store, the stage runner, settings and releases."""
