"""The Scrapy project that crawls sites into raw Parquet shards, and the demo sample website."""
