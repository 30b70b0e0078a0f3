"""Raw item catalog -> silver.items (item_id, title, description, categories, published) + quarantined bad rows.

Categories come from, in order of preference: 0/1 flag columns (`category_flags`, MovieLens genres), a JSON
list (`["noir", "scifi"]`), or a '|'-separated string. A repeated item_id keeps its last row (later file name,
then later line), so a catalog drop can update an item by appending it. `published` (optional: a release or
listing date, what the newest-items cold-start protocol orders by) is read with `date_formats`, tried in order;
blank is no date, text no format reads is quarantined (`bad_published`).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakerec import tables as T
from lakerec.config import CONTRACT_ITEM_FIELDS, SourceConf
from lakerec.etl.sources import MALFORMED, POS, REC, is_blank, to_contract

REQUIRED_ITEM_FIELDS = (T.ITEM_ID, T.TITLE)
ITEM_REASONS = ("missing_column", "bad_encoding", "malformed", "wrong_field_count", "missing_item_id", "missing_title", "bad_published")
ITEM_COLUMNS = (T.ITEM_ID, T.TITLE, T.DESCRIPTION, T.CATEGORIES, T.PUBLISHED)  # silver.items, in order


def validate_items(raw: DataFrame, source: SourceConf) -> DataFrame:
    """Contract fields from a `read_source` frame, with `categories` parsed and `reason` (null: valid)."""
    df = to_contract(raw, source, CONTRACT_ITEM_FIELDS, REQUIRED_ITEM_FIELDS)
    df = df.withColumn(T.CATEGORIES, categories(source)).withColumn("_published", published(source))
    reason = (
        F.when(F.col(MALFORMED).isNotNull(), F.col(MALFORMED))  # missing_column, bad_encoding, malformed, ...
        .when(is_blank(F.col(T.ITEM_ID)), "missing_item_id")
        .when(is_blank(F.col(T.TITLE)), "missing_title")
        .when(~is_blank(F.col(T.PUBLISHED)) & F.col("_published").isNull(), "bad_published")
    )
    return df.withColumn(T.REASON, reason)


def latest_items(validated: DataFrame) -> DataFrame:
    """silver.items from the valid rows: one per item_id, its last row (later file name, then later line)."""
    last_first = Window.partitionBy(F.trim(T.ITEM_ID)).orderBy(F.col(T.SOURCE_FILE).desc(), F.col(POS).desc())
    return (
        validated.where(F.col(T.REASON).isNull())
        .withColumn("_rank", F.row_number().over(last_first))
        .where(F.col("_rank") == 1)
        .select(
            F.trim(T.ITEM_ID).alias(T.ITEM_ID),
            F.trim(T.TITLE).alias(T.TITLE),
            F.when(~is_blank(F.col(T.DESCRIPTION)), F.trim(T.DESCRIPTION)).alias(T.DESCRIPTION),
            T.CATEGORIES,
            F.col("_published").alias(T.PUBLISHED),
        )
    )


def published(source: SourceConf) -> Column:
    """The `published` field as a date: the first of `source.date_formats` that reads it; null when blank or
    unreadable (validate_items tells those apart)."""
    text = F.trim(F.col(T.PUBLISHED))
    return F.coalesce(*(F.try_to_timestamp(text, F.lit(fmt)).cast("date") for fmt in source.date_formats))


def categories(source: SourceConf) -> Column:
    """array<string> of category names, empty when the row names none."""
    if source.category_flags:
        flagged = [F.when(F.trim(F.col(REC).getField(col)) == "1", F.lit(name))
                   for col, name in source.category_flags.items()]
        return F.filter(F.array(*flagged), lambda x: x.isNotNull())
    text = F.trim(F.col(T.CATEGORIES))
    from_list = F.from_json(text, "array<string>")
    from_pipes = F.split(text, r"\|")
    names = F.when(text.startswith("["), from_list).otherwise(from_pipes)
    cleaned = F.filter(F.transform(names, lambda x: F.trim(x)), lambda x: x.isNotNull() & (x != ""))
    return F.coalesce(cleaned, F.array().cast("array<string>"))
