"""HMAC-SHA256 of user ids inside Spark: two `sha2` calls in Spark SQL (what silver uses) against a pandas UDF
calling Python's `hmac`, on the same generated ids.

    .venv/bin/python benchmarks/pseudonym.py [--rows 2000000] [--repeat 3]

Both must give the same digests (checked); prints the best wall time of each and rows per second.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import time

import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from lakerec.config import load_config
from lakerec.etl.pseudonym import hmac_sha256
from lakerec.spark import get_spark

KEY = b"benchmark-key-not-a-secret"


@F.pandas_udf(StringType())
def hmac_udf(ids: pd.Series) -> pd.Series:
    return ids.map(lambda u: hmac.new(KEY, u.encode(), hashlib.sha256).hexdigest())


def best_seconds(df, column, repeat: int) -> float:
    """Best of `repeat` full evaluations (max over the digests, so every row is hashed)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        df.select(column.alias("h")).agg(F.max("h")).first()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spark = get_spark(load_config("local", ["spark.master=local[2]"]))
    ids = spark.range(args.rows).select(F.concat(F.lit("user-"), F.col("id").cast("string")).alias("u")).cache()
    ids.count()
    sample = ids.limit(1000)
    same = sample.select(hmac_sha256(F.col("u"), KEY).alias("a"), hmac_udf("u").alias("b")).where("a != b").count()
    assert same == 0, "the two HMACs differ"
    for name, column in (("spark-sql sha2", hmac_sha256(F.col("u"), KEY)), ("pandas udf hmac", hmac_udf("u"))):
        s = best_seconds(ids, column, args.repeat)
        print(f"{name:<16} {args.rows:>10,} ids  {s:7.2f} s  {args.rows / s:>12,.0f} ids/s")


if __name__ == "__main__":
    main()
