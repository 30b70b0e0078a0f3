"""Raw inputs: where they are, which files they hold, and how their rows become contract fields.

The I/O edge of the ETL: these functions see paths; everything after `read_source` is DataFrame -> DataFrame.
A raw row is kept as text (`raw`) next to its parsed record, so a row that fails validation can be quarantined
exactly as it arrived.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as ST

from lakerec import tables as T
from lakerec.config import Config, ConfigError, SourceConf
from lakerec.etl import reasons as R

log = logging.getLogger("lakerec.ingest")

# columns of what `read_source` returns, beside T.RAW and T.SOURCE_FILE
REC = "_rec"              # struct of the source's columns, all strings
MALFORMED = "_malformed"  # why the row could not be parsed (a `reasons` constant), null when it was
POS = "_pos"              # increases with the position in a file: "the later row" for last-one-wins rules
SPLIT = "_split"          # where the file split holding the row starts (bytes): text files may be split
HEADER = "_header"        # csv/tsv with a header: 1 (the header line precedes every data row), else 0
LENGTH = "_length"        # text formats: the line's bytes before its \n
_CORRUPT = "_corrupt"
# Hadoop's line reader skips (never holds) a line whose bytes with its \n reach this; text reads set it
MAX_LINE_KEY = "mapreduce.input.linerecordreader.line.maxlength"
# a JSON \u escape of a UTF-16 surrogate with no partner: Jackson would turn it into "?" (an odd number of
# backslashes before the u makes it an escape)
_LONE_SURROGATE = (r"(?<!\\)(\\\\)*\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                   r"|(?<!\\)(\\\\)*(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")

# Spark's decode() only knows a few charsets; line splitting also needs an ASCII-compatible one.
_SPARK_CHARSETS = {"utf-8": "UTF-8", "iso8859-1": "ISO-8859-1", "ascii": "US-ASCII"}


def events_input_path(cfg: Config) -> str:
    """input.events.path, else the demo drops at <lake.root>/raw/events (what `generate` writes)."""
    return cfg.input.events.path or _under_root(cfg, "raw/events")


def items_input_path(cfg: Config) -> str:
    """input.items.path, else the demo catalog at <lake.root>/raw/items (what `generate` writes); only asked for
    when the config has an item catalog (cfg.item_catalog)."""
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


def read_source(spark: SparkSession, files: list[str], conf: SourceConf, wanted: list[str],
                required: list[str] = (), scan: "FileScan | None" = None,  # noqa: F821 - rawfiles imports us
                max_line_bytes: int | None = None) -> DataFrame:
    """Rows of `files` in `conf.format`: columns raw, source_file, _malformed (a reason), _pos, _split, _header,
    _length and _rec (source columns as strings), plus source_line for Parquet and, given `scan`, for text
    (else see `add_source_lines`). `wanted` names the source columns a JSON or Parquet record is asked for.
    `scan` (a `rawfiles.FileScan` of `files`) brings their headers, Parquet schemas, line numbers and the csv
    records whose quoted fields break lines; without it headers and footers are read here.

    jsonl and csv/tsv are read as text lines (gzip transparently, decoded with `conf.encoding`) and parsed with
    an all-string schema, so nothing is coerced before validation and the raw line survives. csv/tsv follow
    RFC 4180 (a quoted field may hold delimiters, doubled quotes and line breaks: such a record is one row,
    numbered by its first line); column names come from `conf.columns`, else from each file's own header
    line; the rows of a file whose header lacks one of the `required` columns are `missing_column`, never read
    by position. Parquet files are read by their own schemas, each value cast to text per file. A line longer
    than `max_line_bytes` (None: no limit) is `line_too_long` (the longest never come back from the read: see
    `lakerec.etl.rawfiles`); text that is not valid UTF-8, or a JSON escape of a lone surrogate, is
    `bad_encoding`.
    """
    if not files:
        raise ValueError("read_source needs at least one file")
    if conf.format == "parquet":
        return _read_parquet(spark, files, wanted, scan.schemas if scan is not None else None)
    lines = read_lines(spark, files, conf.encoding, max_line_bytes)
    line = scan.line_number() if scan is not None else None
    if line is not None:
        lines = lines.withColumn(T.SOURCE_LINE, line)
        if scan.records:
            lines = _join_records(spark, lines, scan.records)
    checks = [(F.col(LENGTH) > max_line_bytes, R.LINE_TOO_LONG)] if max_line_bytes else []
    checks.append((~F.is_valid_utf8(T.RAW), R.BAD_ENCODING))
    if conf.format == "jsonl":
        return _parse_json(lines, wanted, [*checks, (lone_surrogate(F.col(T.RAW)), R.BAD_ENCODING)])
    headers = {} if not conf.header else scan.headers if scan is not None else file_headers(spark, files, conf.encoding)
    return _parse_delimited(lines, files, headers, conf, required, checks)


def lone_surrogate(raw: Column) -> Column:
    """The text holds a JSON escape of a lone surrogate. The regex (lookbehinds, on every line) cost twice the
    JSON parse itself; only lines with a `\\u` escape at all (few) run it."""
    return raw.contains("\\u") & raw.rlike(_LONE_SURROGATE)


def _join_records(spark: SparkSession, lines: DataFrame, records: dict[str, list[tuple[int, int]]]) -> DataFrame:
    """The lines of each (first, last) record joined by \n into one row (its first line's number, `_pos` and
    split); other lines as they were. Only the records' lines are grouped (a broadcast lookup finds them)."""
    member = spark.createDataFrame(
        [(f, line, first) for f, spans in records.items() for first, last in spans for line in range(first, last + 1)],
        f"{T.SOURCE_FILE} string, {T.SOURCE_LINE} long, _record long")
    tagged = lines.join(F.broadcast(member), [T.SOURCE_FILE, T.SOURCE_LINE], "left")
    parts = F.sort_array(F.collect_list(F.struct(T.SOURCE_LINE, T.RAW, POS, SPLIT, LENGTH)))
    joined = (tagged.where(F.col("_record").isNotNull()).groupBy(T.SOURCE_FILE, "_record").agg(parts.alias("_lines"))
              .select(F.concat_ws("\n", F.col(f"_lines.{T.RAW}")).alias(T.RAW), T.SOURCE_FILE,
                      F.col("_lines")[0][POS].alias(POS), F.col("_lines")[0][SPLIT].alias(SPLIT),
                      (F.aggregate(F.col(f"_lines.{LENGTH}"), F.lit(0).cast("long"), lambda a, b: a + b + 1) - 1
                       ).cast("int").alias(LENGTH),
                      F.col("_record").alias(T.SOURCE_LINE)))
    return tagged.where(F.col("_record").isNull()).drop("_record").unionByName(joined)


def add_source_lines(df: DataFrame, line: Column | None = None) -> DataFrame:
    """Add source_line, the 1-based line number in its file, to a `read_source` frame of a text format.

    `line` (from `rawfiles.FileScan.line_number`, which counted the raw lines in one pass) computes it from
    the row's file, split and `_pos`. Without it, an aggregation over `df` does: Spark reads a big plain file in
    several splits, each in one task, its rows consecutive in `_pos`, so a row's line is its offset in its
    split plus the rows of the file's earlier splits (plus the header line); call it on a persisted frame then.
    Parquet rows already carry their line. Lines end at \\n (a \\r before it belongs to the line break).
    """
    if T.SOURCE_LINE in df.columns:
        return df
    if line is not None:
        return df.withColumn(T.SOURCE_LINE, line)
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


def required_columns(conf: SourceConf, fields: tuple[str, ...], required: tuple[str, ...]) -> list[str]:
    """The source columns every file must have: those of `required` fields and of mapped ones (not constants)."""
    return [conf.source_column(f) for f in fields
            if f not in conf.constants and (f in conf.mapping or f in required)]


def wanted_columns(conf: SourceConf, fields: tuple[str, ...]) -> list[str]:
    """The source columns the contract fields (and category flags) are read from."""
    names = [conf.source_column(f) for f in fields if f not in conf.constants]
    return list(dict.fromkeys([*names, *conf.category_flags]))


def is_blank(c: Column) -> Column:
    """Null or only whitespace (Unicode's, tabs and line separators included): what 'missing' means for a raw
    field."""
    return c.isNull() | c.rlike(r"^(?U)\s*$")


def read_lines(spark: SparkSession, files: list[str], encoding: str, max_line_bytes: int | None = None
               ) -> DataFrame:
    """(raw, source_file, _pos, _split, _length) per text line, decoded from `encoding`.

    Lines end at \\n; a \\r before it is dropped (cut as bytes: a line that is not valid UTF-8 keeps its bytes).
    With `max_line_bytes`, Hadoop's reader skips the lines that reach max_line_bytes + 2 bytes, their line break
    counted, without holding them; `rawfiles` finds them, and `read_source` flags the lines a byte over that
    come back. (On a plain file Hadoop may hand back a piece of a skipped line, exactly the bound long where
    every real line is shorter: such pieces are dropped here, before lines are numbered.)
    """
    reader = spark.read.option("lineSep", "\n")
    if max_line_bytes is not None:
        reader = reader.option(MAX_LINE_KEY, str(max_line_bytes + 2))
    text = reader.text(files)
    if max_line_bytes is not None:
        text = text.where(F.octet_length("value") < max_line_bytes + 2)
    value = F.col("value")
    cut = F.when(value.endswith("\r"), F.expr("substring(cast(value AS binary), 1, octet_length(value) - 1)")
                 .cast("string")).otherwise(value)
    return text.select(
        _decoded(cut, encoding), _source_file(), F.monotonically_increasing_id().alias(POS),
        F.col("_metadata.file_block_start").alias(SPLIT), F.octet_length(value).alias(LENGTH))


def file_headers(spark: SparkSession, files: list[str], encoding: str) -> dict[str, str]:
    """Each non-empty file's first line (its header), without a byte-order mark, by the file's qualified name (as
    rows spell their source_file).

    Read through Hadoop's FileSystem and codecs (object stores and gzip as Spark reads them), one short stream a
    file and no Spark job: the first line only, however big the file.
    """
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    codecs_ = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf)
    headers = {}
    for name in files:
        fs = jvm.org.apache.hadoop.fs.Path(name).getFileSystem(conf)
        path = fs.makeQualified(jvm.org.apache.hadoop.fs.Path(name))
        stream = fs.open(path)
        codec = codecs_.getCodec(path)
        if codec is not None:
            stream = codec.createInputStream(stream)
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, _spark_charset(encoding)))
        try:
            line = reader.readLine()
        finally:
            reader.close()
        if line is not None:
            headers[path.toString()] = line.lstrip("\ufeff")
    return headers


def parquet_footer(spark: SparkSession, file: str) -> tuple[ST.StructType, int]:
    """(Spark schema, row count) of a Parquet file, from its footer alone (on the driver, no Spark job)."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    source = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(jvm.org.apache.hadoop.fs.Path(file), conf)
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(source)
    try:
        schema, rows = reader.getFooter().getFileMetaData().getSchema(), reader.getRecordCount()
    finally:
        reader.close()
    converter = jvm.org.apache.spark.sql.execution.datasources.parquet.ParquetToSparkSchemaConverter(
        spark._jsparkSession.sessionState().conf())
    return ST.StructType.fromJson(json.loads(converter.convert(schema).json())), rows


def _decoded(value: Column, encoding: str) -> Column:
    charset = _spark_charset(encoding)
    if charset != "UTF-8":
        # The text source keeps a line's bytes as they are: cast to binary gets them back to decode properly.
        value = F.decode(value.cast("binary"), charset)
    return value.alias(T.RAW)


def header_is_line(headers: dict[str, str]) -> Column:
    """The line is its file's header (a byte-order mark aside)."""
    own = _literal_map(headers)[F.col(T.SOURCE_FILE)]
    return F.coalesce(F.regexp_replace(T.RAW, "^\ufeff", "") == own, F.lit(False))


def _literal_map(mapping: dict) -> Column:
    return F.create_map(*(F.lit(x) for kv in mapping.items() for x in kv))


def _first_reason(checks: list[tuple[Column, str]]) -> Column:
    """The reason of the first (condition, reason) that holds, else null."""
    out = F.when(*checks[0])
    for condition, reason in checks[1:]:
        out = out.when(condition, reason)
    return out


def _parse_json(lines: DataFrame, wanted: list[str], checks: list[tuple[Column, str]]) -> DataFrame:
    """from_json with every wanted key as a string (numbers and lists keep their JSON text); a line that is not
    exactly one JSON object is malformed. `checks`: the line-level (condition, reason)s that come first."""
    schema = ST.StructType([ST.StructField(c, ST.StringType()) for c in wanted + [_CORRUPT]])
    parsed = F.from_json(T.RAW, schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT})
    df = lines.withColumn("_parsed", parsed)
    # a blank line parses to null; a broken one fills the corrupt column; a JSON array is not a record either
    malformed = F.col("_parsed").isNull() | F.col(f"_parsed.{_CORRUPT}").isNotNull() | ~_one_json_value(T.RAW)
    record = F.struct(*(F.col("_parsed").getField(c).alias(c) for c in wanted))
    reason = _first_reason([*checks, (malformed, R.MALFORMED)])
    return df.select(T.RAW, T.SOURCE_FILE, reason.alias(MALFORMED), POS, SPLIT,
                     F.lit(0).alias(HEADER), LENGTH, record.alias(REC), *_numbered(df))


def _one_json_value(raw: str) -> Column:
    """The text is exactly one JSON value, nothing after it.

    from_json (Jackson) stops at the end of the first value and ignores what follows, so `{..}{..}` would keep
    the first object and drop the second. Wrapped as `[text]` the text must count as one array element, and as
    `[text,0]` as two: text that closes the wrapper early (`{..}],[{..}`) ends the array at the same place in
    both, so the two counts would be equal; only text that is one whole value passes both.
    """
    def elements(suffix: str) -> Column:
        return F.json_array_length(F.concat(F.lit("["), F.col(raw), F.lit(suffix)))

    # the common line, `{...}` with no other `}`, is settled without the two extra parses: whatever the object
    # holds, it can only end at that last `}` (if it does not, from_json has marked it broken already)
    flat = F.col(raw).startswith("{") & (F.instr(F.col(raw), "}") == F.length(F.col(raw)))
    return flat | F.coalesce((elements("]") == 1) & (elements(",0]") == 2), F.lit(False))


def _parse_delimited(lines: DataFrame, files: list[str], headers: dict[str, str], conf: SourceConf,
                     required: list[str], checks: list[tuple[Column, str]]) -> DataFrame:
    """from_csv with an all-string schema, columns named by each file's layout (its header, or `columns`).

    A line with too few or too many fields is `wrong_field_count`, a blank line `malformed`; every row of a
    file whose layout lacks a `required` column is `missing_column` (ingest rejects such files before, items
    quarantines their rows). Files sharing a layout share one parse: with several layouts each row is parsed
    once, by its own file's layout only. `checks`: the line-level (condition, reason)s that come first.
    """
    layout_of = layouts(files, headers, conf)
    distinct = list(dict.fromkeys(layout_of.values()))
    if not distinct:  # no file has a header line, so none has a line at all: no rows, the required columns
        record = F.struct(*(F.lit(None).cast("string").alias(c) for c in required))
        return lines.select(T.RAW, T.SOURCE_FILE, F.lit(None).cast("string").alias(MALFORMED), POS, SPLIT,
                            F.lit(1).alias(HEADER), LENGTH, record.alias(REC), *_numbered(lines))
    names = list(dict.fromkeys(c for layout in distinct for c in layout))
    if headers:
        lines = lines.where(~header_is_line(headers))  # a header line is never a data row
    # RFC 4180: a quote inside a quoted field is doubled
    options = {"sep": conf.sep, "escape": '"', "mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
    which = _literal_map({f: distinct.index(layout) for f, layout in layout_of.items()})[F.col(T.SOURCE_FILE)]
    df = lines
    for k, layout in enumerate(distinct):
        schema = ", ".join(f"`{c}` string" for c in [*layout, _CORRUPT])
        parsed = F.from_csv(F.col(T.RAW), schema, options)
        df = df.withColumn(f"_p{k}", parsed if len(distinct) == 1 else F.when(which == k, parsed))

    def field(c: str) -> Column:
        return F.coalesce(*(F.col(f"_p{k}").getField(c) for k, layout in enumerate(distinct)
                            if c in (*layout, _CORRUPT)))

    checks = [*checks, (F.trim(F.col(T.RAW)) == "", R.MALFORMED), (field(_CORRUPT).isNotNull(), R.WRONG_FIELD_COUNT)]
    lacking = [k for k, layout in enumerate(distinct) if not set(required) <= set(layout)]
    if lacking:  # the whole file, before any row-level reason
        log.warning("%s lack a required column %s: their rows are quarantined as missing_column",
                    sorted(f for f, layout in layout_of.items() if distinct.index(layout) in lacking), required)
        checks.insert(0, (which.isin(lacking), R.MISSING_COLUMN))
    malformed = _first_reason(checks)
    record = F.struct(*(field(c).alias(c) for c in names))
    header_lines = F.lit(1 if conf.header else 0)
    return df.select(T.RAW, T.SOURCE_FILE, malformed.alias(MALFORMED), POS, SPLIT, header_lines.alias(HEADER),
                     LENGTH, record.alias(REC), *_numbered(df))


def _numbered(df: DataFrame) -> list[str]:
    return [T.SOURCE_LINE] if T.SOURCE_LINE in df.columns else []


def layouts(files: list[str], headers: dict[str, str], conf: SourceConf) -> dict[str, tuple[str, ...]]:
    """file -> its column names: `columns` when given (they rename every header), else the file's own header."""
    if conf.columns:
        return {f: tuple(conf.columns) for f in files}
    if not conf.header:
        raise ConfigError(f"a {conf.format} source without a header needs `columns` (the names, in order)")
    split = (lambda h: next(csv.reader([h], delimiter=conf.sep))) if len(conf.sep) == 1 else (
        lambda h: h.split(conf.sep))
    return {f: tuple(split(h)) for f, h in headers.items() if f in files}


def _read_parquet(spark: SparkSession, files: list[str], wanted: list[str],
                  schemas: dict[str, ST.StructType] | None) -> DataFrame:
    """Parquet, each file by its own schema (files sharing one share a read): the wanted columns as text (an
    integer id its decimal text, a timestamp ISO-8601 with its offset, nested values their JSON), null where a
    file lacks one; raw is the row as JSON. Extra columns are ignored; differing types across files are fine."""
    schemas = schemas if schemas is not None else {f: parquet_footer(spark, f)[0] for f in files}
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(schemas[f].json(), []).append(f)
    present = {c for f in files for c in schemas[f].fieldNames()}
    names = [c for c in wanted if c in present]
    parts = []
    for schema_json, group in groups.items():
        schema = ST.StructType.fromJson(json.loads(schema_json))
        by_name = {f.name: f for f in schema}
        df = spark.read.schema(schema).parquet(*group)
        rec = [(_as_text(by_name[c]) if c in by_name else F.lit(None).cast("string")).alias(c) for c in names]
        invalid = [~F.is_valid_utf8(_as_text(by_name[c])) for c in names if c in by_name]
        parts.append(df.select(
            F.to_json(F.struct(*(F.col(f"`{c}`") for c in df.columns))).alias(T.RAW),
            _source_file(),
            F.when(_any(invalid), R.BAD_ENCODING).alias(MALFORMED),
            F.monotonically_increasing_id().alias(POS),
            F.lit(0).cast("long").alias(SPLIT),
            F.lit(0).alias(HEADER),
            F.lit(None).cast("long").alias(LENGTH),
            F.struct(*rec).alias(REC),
            (F.col("_metadata.row_index") + 1).alias(T.SOURCE_LINE),
        ))
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def _any(conditions: list[Column]) -> Column:
    """Any of the conditions holds (nulls count as false)."""
    out = F.lit(False)
    for c in conditions:
        out = out | F.coalesce(c, F.lit(False))
    return out


def _as_text(f: ST.StructField) -> Column:
    """A Parquet column's value as the text a contract field reads."""
    c = F.col(f"`{f.name}`")
    if isinstance(f.dataType, (ST.ArrayType, ST.MapType, ST.StructType)):
        return F.to_json(c)
    if isinstance(f.dataType, ST.TimestampType):  # an instant: its offset written out, whatever the zones
        return F.date_format(c, "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")
    if isinstance(f.dataType, ST.TimestampNTZType):  # a local time: input.events.timezone decides
        return F.date_format(c, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
    return c.cast("string")


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
