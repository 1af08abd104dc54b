"""Label Studio integration: the client, tasks, active-learning selection, quality control, sync."""
