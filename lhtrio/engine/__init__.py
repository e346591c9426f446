"""The engine: one per volume; fans I/O out to replicas and keeps them identical."""
