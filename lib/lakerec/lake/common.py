"""What both engines share: the error type and how a table location is spelled for Spark."""
from __future__ import annotations


class LakeError(RuntimeError):
    """A lake problem worded for the person running the job (missing table, schema mismatch, bad option)."""


def spark_path(uri: str) -> str:
    """`uri` as Spark must see it: local paths get an explicit file://, so a cluster's defaultFS (HDFS) cannot
    claim them."""
    return uri if "://" in uri else f"file://{uri}"
