"""One interface for Delta tables, two engines behind it (see `Lake`)."""
from lakerec.lake.lake import Lake, LakeError, choose_engine

__all__ = ["Lake", "LakeError", "choose_engine"]
