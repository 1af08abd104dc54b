"""Label Studio and labels: the client, task conversion, rounds and their life, selection, quality control, sync."""
