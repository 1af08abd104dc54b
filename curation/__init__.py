"""Pure curation stages over record tables: validation, deduplication, quality and privacy scrubbing."""
