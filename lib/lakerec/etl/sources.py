"""Raw inputs: where they are, which files they hold, and how their rows become contract fields.

The I/O edge of the ETL: these functions see paths; everything after `read_source` is DataFrame -> DataFrame.
A raw row is kept as text (`raw`) next to its parsed record, so a row that fails validation can be quarantined
exactly as it arrived.
"""
from __future__ import annotations

import codecs
import csv
import hashlib

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as ST

from lakerec import tables as T
from lakerec.config import Config, ConfigError, SourceConf

# columns of what `read_source` returns, beside T.RAW and T.SOURCE_FILE
REC = "_rec"              # struct of the source's columns, all strings
MALFORMED = "_malformed"  # the row could not be parsed (truncated JSON, wrong number of fields, blank line)
POS = "_pos"              # increases with the position in a file: "the later row" for last-one-wins rules
SPLIT = "_split"          # where the file split holding the row starts (bytes): text files may be split
HEADER = "_header"        # csv/tsv with a header: 1 (the header line precedes every data row), else 0
_CORRUPT = "_corrupt"

# Spark's decode() only knows a few charsets; line splitting also needs an ASCII-compatible one.
_SPARK_CHARSETS = {"utf-8": "UTF-8", "iso8859-1": "ISO-8859-1", "ascii": "US-ASCII"}


def events_input_path(cfg: Config) -> str:
    """input.events.path, else the demo drops at <lake.root>/raw/events (what `generate` writes)."""
    return cfg.input.events.path or _under_root(cfg, "raw/events")


def items_input_path(cfg: Config) -> str:
    """input.items.path, else the demo catalog at <lake.root>/raw/items (what `generate` writes)."""
    return cfg.input.items.path or _under_root(cfg, "raw/items")


def _under_root(cfg: Config, relative: str) -> str:
    """Joined as text: pathlib would fold the '//' of a URI root such as s3://bucket/lake."""
    return f"{cfg.lake.root.rstrip('/')}/{relative}"


def list_input_files(spark: SparkSession, path: str) -> list[str]:
    """The data files at `path` (a file, or a folder's files without hidden `.x`/`_x` ones), sorted.

    Listed through Hadoop's FileSystem so object stores work as local folders do; the names come back fully
    qualified (file:/..., s3a://...), the same spelling `read_source` records in `source_file`.
    """
    jvm = spark._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(hpath):
        raise FileNotFoundError(f"input path not found: {path}")
    status = fs.getFileStatus(hpath)
    if status.isFile():
        return [status.getPath().toString()]
    return sorted(
        s.getPath().toString()
        for s in fs.listStatus(hpath)
        if s.isFile() and not s.getPath().getName().startswith((".", "_"))
    )


def batch_id_of(spark: SparkSession, files: list[str]) -> str:
    """A batch's id: a hash of its files' names, sizes and modification times (the same files, the same id)."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    digest = hashlib.sha256()
    for name in sorted(files):
        path = jvm.org.apache.hadoop.fs.Path(name)
        status = path.getFileSystem(conf).getFileStatus(path)
        digest.update(f"{name}\t{status.getLen()}\t{status.getModificationTime()}\n".encode())
    return digest.hexdigest()[:20]


def read_source(spark: SparkSession, files: list[str], conf: SourceConf, wanted: list[str]) -> DataFrame:
    """Rows of `files` in `conf.format`: columns raw, source_file, _malformed, _pos, _split, _header and _rec
    (source columns as strings), plus source_line for Parquet (text formats: see `add_source_lines`).
    `wanted` names the source columns a JSON record is asked for (JSON has no header).

    jsonl and csv/tsv are read as text lines (gzip transparently, decoded with `conf.encoding`) and parsed with
    an all-string schema, so nothing is coerced before validation and the raw line survives. csv/tsv column
    names come from `conf.columns`, else the header line (every file must start with the same header).
    """
    if not files:
        raise ValueError("read_source needs at least one file")
    if conf.format == "parquet":
        return _read_parquet(spark, files)
    lines = _read_lines(spark, files, conf.encoding)
    if conf.format == "jsonl":
        return _parse_json(lines, wanted)
    header = _first_line(spark, files[0], conf.encoding) if conf.header else None
    return _parse_delimited(lines, header, conf)


def add_source_lines(df: DataFrame, offsets: Column | None = None) -> DataFrame:
    """Add source_line, the 1-based line number in its file, to a `read_source` frame of a text format.

    Spark reads a big plain file in several splits, each in one task, its rows consecutive in `_pos`: a row's
    line is its offset in its split plus the rows of the file's earlier splits (plus the header line).
    `offsets` (from `line_offsets`, which counts the raw lines alone) saves the aggregation over `df`; without
    it, that aggregation runs over `df`, so call it on a persisted frame (Parquet rows already carry lines).
    Lines are as Hadoop splits them: at \\n, \\r\\n or \\r.
    """
    if T.SOURCE_LINE in df.columns:
        return df
    if offsets is not None:  # a literal map, (file, split) -> the line number of the split's first row - _pos
        key = F.concat_ws("\t", T.SOURCE_FILE, F.col(SPLIT).cast("string"))
        return df.withColumn(T.SOURCE_LINE, F.col(POS) + offsets[key])
    offsets = _offsets(df.groupBy(T.SOURCE_FILE, SPLIT).agg(F.min(POS).alias("_first"), F.count(F.lit(1)).alias("_n")))
    line = F.col(POS) - F.col("_first") + F.col("_before") + F.col(HEADER) + 1
    return (df.join(F.broadcast(offsets), [T.SOURCE_FILE, SPLIT])
            .withColumn(T.SOURCE_LINE, line).drop("_first", "_before"))


def fenced(df: DataFrame) -> DataFrame:
    """The same rows behind a wall the optimizer pushes no filter through: `_pos` plus a nondeterministic zero.

    Without it a filter on a column computed from the parsed record (validation's `reason`) is pushed down to
    the scan with every expression it depends on inlined: from_json and the timestamp regexes then run once
    per reference (dozens of times a row) and outside whole-stage codegen, several times slower than parsing
    once. Behind the fence the filter reads the computed column.
    """
    return df.withColumn(POS, F.col(POS) + F.spark_partition_id() * 0)


def line_offsets(spark: SparkSession, files: list[str], conf: SourceConf) -> tuple[Column | None, int]:
    """(offsets for `add_source_lines`, rows the files hold) from one pass over their raw lines, nothing parsed.

    Rows are lines minus header lines (csv/tsv with a header), as `read_source` returns them; the offsets count
    every line, headers included. They come back as a literal map (a few entries a file: no join, no job to
    build it) from "<file>\\t<split>" to what turns a row's `_pos` into its line number. `_pos` is the same as in
    `read_source`'s frame: both read the same files the same way and number lines before any filter.
    Parquet needs no offsets (its rows carry their index): (None, its row count).
    """
    if conf.format == "parquet":
        return None, spark.read.parquet(*files).count()
    lines = _read_lines(spark, files, conf.encoding)
    header = _first_line(spark, files[0], conf.encoding) if conf.format != "jsonl" and conf.header else None
    is_header = _is_header(header) if header is not None else F.lit(False)
    rows = lines.groupBy(T.SOURCE_FILE, SPLIT).agg(
        F.min(POS).alias("_first"), F.count(F.lit(1)).alias("_n"), F.sum(is_header.cast("long")).alias("_headers")
    ).collect()
    entries, before = [], {}
    for r in sorted(rows, key=lambda r: (r[T.SOURCE_FILE], r[SPLIT])):
        earlier = before.get(r[T.SOURCE_FILE], 0)  # lines of the file's earlier splits
        entries += [F.lit(f"{r[T.SOURCE_FILE]}\t{r[SPLIT]}"), F.lit(earlier + 1 - r["_first"]).cast("long")]
        before[r[T.SOURCE_FILE]] = earlier + r["_n"]
    offsets = F.create_map(*entries) if entries else None
    return offsets, sum(r["_n"] - r["_headers"] for r in rows)


def _offsets(splits: DataFrame) -> DataFrame:
    """(source_file, _split, _first, _n) per split -> (source_file, _split, _first, _before): _before, the
    lines of the file's earlier splits."""
    earlier = Window.partitionBy(T.SOURCE_FILE).orderBy(SPLIT)
    return splits.select(T.SOURCE_FILE, SPLIT, "_first", (F.sum("_n").over(earlier) - F.col("_n")).alias("_before"))


def to_contract(df: DataFrame, conf: SourceConf, fields: tuple[str, ...], required: tuple[str, ...]) -> DataFrame:
    """Add one string column per contract field: a constant, the mapped source column, or null when the source
    has no such column. A mapped column, or a `required` field's column, missing from a header/file schema is a
    configuration error (named), not a stream of quarantined rows.
    """
    available = set(df.schema[REC].dataType.fieldNames())
    out = []
    for field in fields:
        if field in conf.constants:
            out.append(F.lit(conf.constants[field]).alias(field))
            continue
        column = conf.source_column(field)
        if column in available:
            out.append(F.col(REC).getField(column).alias(field))
        elif field in conf.mapping or field in required:
            raise ConfigError(
                f"{field} is read from column {column!r}, which the input does not have "
                f"(columns: {sorted(available)}): fix the source's mapping/columns"
            )
        else:
            out.append(F.lit(None).cast("string").alias(field))
    return df.select("*", *out)


def wanted_columns(conf: SourceConf, fields: tuple[str, ...]) -> list[str]:
    """The source columns the contract fields (and category flags) are read from."""
    names = [conf.source_column(f) for f in fields if f not in conf.constants]
    return list(dict.fromkeys([*names, *conf.category_flags]))


def is_blank(c: Column) -> Column:
    """Null or only whitespace (Unicode's, tabs and line separators included): what 'missing' means for a raw
    field."""
    return c.isNull() | c.rlike(r"^(?U)\s*$")


def _read_lines(spark: SparkSession, files: list[str], encoding: str) -> DataFrame:
    """(raw, source_file, _pos, _split) per text line, decoded from `encoding`."""
    lines = spark.read.text(files)
    return lines.select(_decoded(encoding), _source_file(), F.monotonically_increasing_id().alias(POS),
                        F.col("_metadata.file_block_start").alias(SPLIT))


def _first_line(spark: SparkSession, file: str, encoding: str) -> str:
    """The header: a file's first line (its first split holds it), without a byte-order mark."""
    first = spark.read.text(file).select(_decoded(encoding)).first()
    if first is None:
        raise ValueError(f"{file} is empty: no header line")
    return first[0].lstrip("\ufeff")


def _decoded(encoding: str) -> Column:
    charset = _spark_charset(encoding)
    value = F.col("value")
    if charset != "UTF-8":
        # The text source keeps a line's bytes as they are: cast to binary gets them back to decode properly.
        value = F.decode(value.cast("binary"), charset)
    return value.alias(T.RAW)


def _is_header(header: str) -> Column:
    """The line is the header (a byte-order mark aside)."""
    return F.regexp_replace(T.RAW, "^\ufeff", "") == F.lit(header)


def _parse_json(lines: DataFrame, wanted: list[str]) -> DataFrame:
    """from_json with every wanted key as a string (numbers and lists keep their JSON text)."""
    schema = ST.StructType([ST.StructField(c, ST.StringType()) for c in wanted + [_CORRUPT]])
    parsed = F.from_json(T.RAW, schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT})
    df = lines.withColumn("_parsed", parsed)
    # a blank line parses to null; a broken one fills the corrupt column; a JSON array is not a record either
    malformed = F.col("_parsed").isNull() | F.col(f"_parsed.{_CORRUPT}").isNotNull()
    record = F.struct(*(F.col("_parsed").getField(c).alias(c) for c in wanted))
    return df.select(T.RAW, T.SOURCE_FILE, malformed.alias(MALFORMED), POS, SPLIT, F.lit(0).alias(HEADER),
                     record.alias(REC))


def _parse_delimited(lines: DataFrame, header: str | None, conf: SourceConf) -> DataFrame:
    """from_csv with an all-string schema; a line with too few or too many fields is malformed."""
    columns = _delimited_columns(header, conf)
    schema = ", ".join(f"`{c}` string" for c in [*columns, _CORRUPT])
    options = {"sep": conf.sep, "mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
    if header is not None:
        # header lines are not data rows: every file repeats the same one
        lines = lines.where(~_is_header(header))
    df = lines.withColumn("_parsed", F.from_csv(F.col(T.RAW), schema, options))
    malformed = (F.trim(F.col(T.RAW)) == "") | F.col(f"_parsed.{_CORRUPT}").isNotNull()
    record = F.struct(*(F.col("_parsed").getField(c).alias(c) for c in columns))
    header_lines = F.lit(0 if header is None else 1)
    return df.select(T.RAW, T.SOURCE_FILE, malformed.alias(MALFORMED), POS, SPLIT, header_lines.alias(HEADER),
                     record.alias(REC))


def _read_parquet(spark: SparkSession, files: list[str]) -> DataFrame:
    """Parquet: typed columns become strings (nested ones their JSON text); raw is the row as JSON."""
    df = spark.read.parquet(*files)
    as_text = [
        (F.to_json(F.col(f"`{f.name}`")) if isinstance(f.dataType, (ST.ArrayType, ST.MapType, ST.StructType))
         else F.col(f"`{f.name}`").cast("string")).alias(f.name)
        for f in df.schema
    ]
    return df.select(
        F.to_json(F.struct(*(F.col(f"`{c}`") for c in df.columns))).alias(T.RAW),
        _source_file(),
        F.lit(False).alias(MALFORMED),
        F.monotonically_increasing_id().alias(POS),
        F.lit(0).cast("long").alias(SPLIT),
        F.lit(0).alias(HEADER),
        F.struct(*as_text).alias(REC),
        (F.col("_metadata.row_index") + 1).alias(T.SOURCE_LINE),
    )


def _delimited_columns(header: str | None, conf: SourceConf) -> list[str]:
    """`columns` when given (they rename a header), else the header's names."""
    if conf.columns:
        return list(conf.columns)
    if header is None:
        raise ConfigError(f"a {conf.format} source without a header needs `columns` (the names, in order)")
    return next(csv.reader([header], delimiter=conf.sep)) if len(conf.sep) == 1 else header.split(conf.sep)


def _source_file() -> Column:
    """The file a row came from, spelled as Hadoop lists it: Spark reports it URL-encoded ('%20' for a space);
    '+' is protected first because url_decode would turn it into a space."""
    encoded = F.regexp_replace(F.col("_metadata.file_path"), r"\+", "%2B")
    return F.url_decode(encoded).alias(T.SOURCE_FILE)


def _spark_charset(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r}") from None
    if name not in _SPARK_CHARSETS:
        raise ConfigError(f"encoding {encoding!r} is not supported for line-based input: use one of "
                          f"utf-8, latin-1, ascii (or convert the files)")
    return _SPARK_CHARSETS[name]
