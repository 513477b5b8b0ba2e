"""Limits: moving windows and the workspace budget, their keys, the memory and Redis stores that
decide them atomically, and bounded maps."""
