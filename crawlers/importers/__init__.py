"""Importers: a team's own folders, buckets, manifests and label exports, written as raw shards like a crawl."""
