"""Data sources, shard builder and Ray executors. Only executor modules import Ray."""
