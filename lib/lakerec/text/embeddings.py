"""silver.items -> item texts -> vectors in silver.item_embeddings, embedding only what is new or changed.

A row per (item_id, encoder): the content hash of the text that was embedded, the vector and its size. A run
embeds the items whose (item_id, encoder, content_hash) the table lacks, keeps every other row of that encoder,
drops the rows of items no longer in the catalog, and leaves other encoders' rows as they are: a second run on
the same catalog embeds nothing, a changed title re-embeds that item only. Embedding happens in the executors
(`mapInPandas`), each Python worker loading the encoder once and encoding its rows in batches.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as St

from lakerec import tables as T

EMBEDDING_SCHEMA = St.StructType([
    St.StructField(T.ITEM_ID, St.StringType(), False),
    St.StructField(T.ENCODER, St.StringType(), False),
    St.StructField(T.CONTENT_HASH, St.StringType(), False),
    St.StructField(T.DIM, St.IntegerType(), False),
    St.StructField(T.EMBEDDING, St.ArrayType(St.FloatType(), False), False),
    St.StructField(T.EMBEDDED_AT, St.TimestampType(), False),
])
TEXT = "text"


def item_text() -> Column:
    """What the encoder reads: 'title. category, category. description' (empty parts left out).

    Titles carry most of the meaning (MovieLens titles also carry the year); categories add the genre words.
    """
    cats = F.array_join(F.coalesce(F.col(T.CATEGORIES), F.array().cast("array<string>")), ", ")
    parts = F.array(F.trim(F.col(T.TITLE)), cats, F.trim(F.col(T.DESCRIPTION)))
    return F.array_join(F.filter(parts, lambda p: p.isNotNull() & (p != "")), ". ")


def content_hash(text: Column) -> Column:
    """sha-256 of the text as embedded: equal text, equal hash, whichever run or machine computed it."""
    return F.sha2(text, 256)


def texts_to_embed(items: DataFrame, existing: DataFrame | None, encoder: str) -> tuple[DataFrame, DataFrame]:
    """(items whose text this encoder has not embedded: item_id, text, content_hash; the rows to keep as they are).

    `existing` is silver.item_embeddings (None before its first write). Kept: this encoder's rows whose item is
    still in the catalog with the same hash, and every row of other encoders.
    """
    texts = (items.select(T.ITEM_ID, item_text().alias(TEXT))
             .withColumn(T.CONTENT_HASH, content_hash(F.col(TEXT))))
    if existing is None:
        return texts, items.sparkSession.createDataFrame([], EMBEDDING_SCHEMA)
    mine = existing.where(F.col(T.ENCODER) == encoder)
    current = texts.select(T.ITEM_ID, T.CONTENT_HASH)
    keep = mine.join(current, [T.ITEM_ID, T.CONTENT_HASH], "left_semi")
    todo = texts.join(mine.select(T.ITEM_ID, T.CONTENT_HASH), [T.ITEM_ID, T.CONTENT_HASH], "left_anti")
    others = existing.where(F.col(T.ENCODER) != encoder)
    return todo, keep.unionByName(others).select(*EMBEDDING_SCHEMA.fieldNames())


def embed_texts(texts: DataFrame, encoder: str, batch_size: int, device: str | None = None,
                partitions: int | None = None) -> DataFrame:
    """(item_id, text, content_hash) -> silver.item_embeddings rows, encoded in the executors.

    Each Python worker loads the encoder once (`lakerec.text.encoder` caches it per process; Spark reuses its
    workers across tasks) and encodes its partition `batch_size` texts at a time.
    """
    n = partitions or texts.sparkSession.sparkContext.defaultParallelism
    embedded_at = datetime.now(timezone.utc)

    def encode_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from lakerec.text.encoder import encode  # on the executor

        for batch in batches:
            if batch.empty:
                continue
            vectors = encode(batch[TEXT].tolist(), encoder, batch_size, device)
            yield pd.DataFrame({
                T.ITEM_ID: batch[T.ITEM_ID].to_numpy(), T.ENCODER: encoder,
                T.CONTENT_HASH: batch[T.CONTENT_HASH].to_numpy(), T.DIM: np.int32(vectors.shape[1]),
                T.EMBEDDING: list(vectors), T.EMBEDDED_AT: pd.Timestamp(embedded_at),
            })

    return texts.repartition(n, T.ITEM_ID).mapInPandas(encode_partition, EMBEDDING_SCHEMA)


def read_item_embeddings(embeddings: DataFrame, encoder: str) -> DataFrame:
    """(item_id, embedding) of one encoder from a silver.item_embeddings snapshot: what scoring joins on."""
    return embeddings.where(F.col(T.ENCODER) == encoder).select(T.ITEM_ID, T.EMBEDDING)


def load_item_embeddings(lake, encoder: str, version: int | None = None) -> DataFrame:
    """(item_id, embedding) of `encoder` (e.g. a model's `config.text_encoder`) from silver.item_embeddings at
    `version` (latest if None), read through the lake so the job records the version as lineage."""
    return read_item_embeddings(lake.read(T.SILVER_ITEM_EMBEDDINGS, version), encoder)


def cold_item_vectors(model, embeddings: pd.DataFrame, known_item_ids: Sequence[str]):
    """(item ids, [N, d] scorer-ready vectors) of the items in `embeddings` (item_id, embedding of the model's
    encoder) that the model's index lacks: new catalog items, scored from their text alone
    (`model.item_vectors_from_text`); score = user_vectors(inputs) @ vectors.T, on the scale of item_vectors()."""
    import torch

    known = set(map(str, known_item_ids))
    new = embeddings[~embeddings[T.ITEM_ID].astype(str).isin(known)]
    if new.empty:
        return [], torch.zeros(0, model.config.dim)
    text = torch.as_tensor(np.stack([np.asarray(v, dtype=np.float32) for v in new[T.EMBEDDING]]))
    with torch.no_grad():
        return new[T.ITEM_ID].astype(str).tolist(), model.item_vectors_from_text(text)


def embedding_matrix(rows: pd.DataFrame, item_ids: Sequence[str], dim: int | None = None) -> np.ndarray:
    """[len(item_ids) + 1, dim] float32 aligned to item_idx (row 0 = padding; an item without text: zeros).

    rows: (item_id, embedding) of one encoder, e.g. `read_item_embeddings(...).toPandas()`.
    """
    if dim is None:
        if rows.empty:
            raise ValueError("no embeddings for this encoder and no dim given: run the embed stage first")
        dim = len(rows[T.EMBEDDING].iloc[0])
    out = np.zeros((len(item_ids) + 1, dim), dtype=np.float32)
    position = {item: i + 1 for i, item in enumerate(item_ids)}
    for item, vector in zip(rows[T.ITEM_ID], rows[T.EMBEDDING]):
        idx = position.get(str(item))
        if idx is not None:
            out[idx] = np.asarray(vector, dtype=np.float32)
    return out
