"""Acquisition: the Scrapy project that crawls sites into raw Parquet shards, and importers of a team's own data."""
