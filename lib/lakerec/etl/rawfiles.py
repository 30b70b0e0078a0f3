"""Raw files as wholes: which can be read, how many rows each holds, how its rows are numbered, which of its
lines are too long to read.

`scan_files` makes one pass over the raw lines of the new files (nothing parsed) and collects, per file and
split, what numbers the rows. A file that cannot be read (a truncated or corrupt gzip, a Parquet file with a
broken footer or pages, an I/O error) fails that pass, or the parse after it, with Spark's FAILED_READ_FILE
error naming it: the file is taken out as `Rejected` (path, size, a one-line reason, the error's class) and the
pass runs again over the rest, so a damaged file costs a rerun of the pass only when there is one. A csv/tsv
file whose header lacks a required column is rejected the same way, from its header alone.

Lines longer than `input.max_line_bytes` are skipped by Hadoop's line reader (its
`mapreduce.input.linerecordreader.line.maxlength`) without ever being held whole. The pass counts the bytes it
read per file: where they fall short of the file's size, the file held such lines, and only that file is
streamed once more on the driver, in bounded chunks, to find their line numbers, lengths and prefixes.
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as ST

from lakerec import tables as T
from lakerec.config import SourceConf
from lakerec.lake import Lake
from lakerec.etl.sources import (
    LENGTH, POS, SPLIT, file_headers, header_is_line, layouts, parquet_footer, read_lines,
)

log = logging.getLogger("lakerec.ingest")

LONG_LINE_PREFIX_BYTES = 1024  # what quarantine keeps of a line_too_long line
_CHUNK = 1 << 20               # bytes a driver-side stream reads at a time
MAX_RECORD_LINES = 1000        # csv/tsv: a quoted field spans at most this many lines (a stray quote opens none)
_GZIP_SIZE_MOD = 1 << 32       # a gzip file's trailer holds its uncompressed size modulo 2^32
MISSING_COLUMN_ERROR = "missing_column"
# Task failures are logged by these with a Java stack trace; a bad file is reported in one line instead
_TASK_ERROR_LOGGERS = ("org.apache.spark.executor.Executor", "org.apache.spark.scheduler.TaskSetManager")


class BadInputFiles(RuntimeError):
    """input.on_bad_file is `fail` and some files could not be read: nothing was committed."""


@dataclass(frozen=True)
class Rejected:
    file: str
    size: int
    modified: int      # epoch milliseconds
    reason: str        # one line
    error_class: str

    def describe(self) -> str:
        return f"rejected {self.file} ({self.size} bytes): {self.error_class}: {self.reason}"


@dataclass(frozen=True)
class LongLine:
    file: str
    line: int          # 1-based line number in the file
    length: int        # bytes before its \n
    prefix: bytes      # its first LONG_LINE_PREFIX_BYTES bytes
    ended: bool = True  # a \n ends it (not so the last line of a file that lacks one)

    @property
    def consumed(self) -> int:
        """Its bytes with its \n: what Hadoop's reader compares with its bound."""
        return self.length + self.ended


@dataclass
class FileScan:
    """The readable files of a batch and what numbers their rows; the rejected ones and why."""

    files: list[str]
    rejected: list[Rejected] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)          # rows the read returns (no header, a record once)
    first_index: dict[tuple[str, int], int] = field(default_factory=dict)  # (file, split) -> index of pos 0
    long_lines: dict[str, list[LongLine]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)       # csv/tsv with a header
    schemas: dict[str, ST.StructType] = field(default_factory=dict)  # parquet
    records: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # csv/tsv: (first, last) line of a
    #                                                                          record whose quoted field breaks lines

    @property
    def rows_read(self) -> int:
        """Every row of the readable files: those the read returns and the too-long lines it skips."""
        return sum(self.rows.values()) + sum(len(v) for v in self.long_lines.values())

    def reject(self, rejected: Rejected) -> None:
        """Take a file out: it is not read, counted or marked as ingested."""
        self.files.remove(rejected.file)
        self.rejected.append(rejected)
        for table in (self.rows, self.long_lines, self.headers, self.schemas, self.records):
            table.pop(rejected.file, None)
        self.first_index = {k: v for k, v in self.first_index.items() if k[0] != rejected.file}

    def line_number(self) -> Column | None:
        """source_line of a row of a text format, from its file, split and `_pos`: its index among the lines the
        read returned (a literal map, a few entries a file), plus the too-long lines before it. None for
        Parquet, whose rows carry their index."""
        if not self.first_index:
            return None
        index_of = F.create_map(*(x for (f, split), first in sorted(self.first_index.items())
                                  for x in (F.lit(f"{f}\t{split}"), F.lit(first).cast("long"))))
        index = F.col(POS) + index_of[F.concat_ws("\t", T.SOURCE_FILE, F.col(SPLIT).cast("string"))]
        # a too-long line j (0-based, in order) is skipped: rows from index line - j on come one line later
        shifted = [
            F.when(F.col(T.SOURCE_FILE) == f, sum(F.when(index >= ln.line - j, 1).otherwise(0)
                                                    for j, ln in enumerate(lines)))
            for f, lines in sorted(self.long_lines.items()) if lines
        ]
        return index + F.coalesce(*shifted, F.lit(0)) if shifted else index


def scan_files(spark: SparkSession, files: list[str], conf: SourceConf, required: list[str],
               max_line_bytes: int) -> FileScan:
    """The FileScan of `files` (see the module's doc): headers and Parquet footers file by file, then one pass
    over the text lines, rerun without a file whenever one turns out unreadable."""
    scan = FileScan(files=sorted(files))
    if conf.format == "parquet":
        for f in list(scan.files):
            try:
                scan.schemas[f], scan.rows[f] = parquet_footer(spark, f)
            except Exception as e:  # noqa: BLE001 - any failure to read one footer rejects that file alone
                scan.reject(rejected_for(spark, f, *_java_error(e)))
        _reject_lacking(spark, scan, {f: tuple(s.fieldNames()) for f, s in scan.schemas.items()}, required, conf)
        return scan
    if conf.format != "jsonl" and conf.header:
        for f in list(scan.files):
            try:
                header = file_headers(spark, [f], conf.encoding)
            except Exception as e:  # noqa: BLE001
                scan.reject(rejected_for(spark, f, *_java_error(e)))
                continue
            scan.headers.update(header)
        if not conf.columns:
            _reject_lacking(spark, scan, layouts(scan.files, scan.headers, conf), required, conf)
    count_lines(spark, scan, conf, max_line_bytes)
    return scan


def _reject_lacking(spark: SparkSession, scan: FileScan, columns: dict[str, tuple[str, ...]],
                    required: list[str], conf: SourceConf) -> None:
    """Reject the files that lack a required column. A column named in `mapping` that no file has is left to
    `to_contract`'s configuration error: the mapping, not the files, is wrong then."""
    mapped = {conf.source_column(f) for f in conf.mapping}
    misnamed = {c for c in required if c in mapped and not any(c in cols for cols in columns.values())}
    for f, cols in columns.items():
        lacking = [c for c in required if c not in misnamed and c not in cols]
        if lacking:
            scan.reject(rejected_for(spark, f, f"lacks column(s) {lacking}; it has {list(cols)}",
                                     MISSING_COLUMN_ERROR))


class UnreadableFile(Exception):
    """A file found damaged while its lines were searched (the pass reruns without it)."""

    def __init__(self, rejected: "Rejected"):
        super().__init__(rejected.reason)
        self.rejected = rejected


def count_lines(spark: SparkSession, scan: FileScan, conf: SourceConf, max_line_bytes: int) -> None:
    """Fill `scan`'s line counts and numbering from one pass over its files' lines; a file the pass cannot read
    is rejected and the pass runs again over the rest (`_pos` depends on the set of files read)."""
    with quiet_task_errors(spark):
        while scan.files:
            try:
                _count_lines(spark, scan, conf, max_line_bytes)
                return
            except UnreadableFile as e:
                scan.reject(e.rejected)
            except Exception as e:  # noqa: BLE001 - only an unreadable file is handled; anything else re-raised
                bad = unreadable_file(spark, e, scan.files)
                if bad is None:
                    raise
                scan.reject(bad)


def _count_lines(spark: SparkSession, scan: FileScan, conf: SourceConf, max_line_bytes: int) -> None:
    """One pass over the raw lines: per (file, split) the first `_pos`, the lines, header lines and bytes."""
    lines = read_lines(spark, scan.files, conf.encoding, max_line_bytes)
    is_header = header_is_line(scan.headers) if scan.headers else F.lit(False)
    # csv/tsv: a line with an odd number of quotes opens or closes a quoted field that holds a line break
    odd = (F.collect_list(F.when(F.regexp_count(T.RAW, F.lit('"')) % 2 == 1, F.col(POS))) if conf.format != "jsonl"
           else F.array().cast("array<long>"))
    rows = lines.groupBy(T.SOURCE_FILE, SPLIT).agg(
        F.min(POS).alias("_first"), F.count(F.lit(1)).alias("_n"), F.sum(is_header.cast("long")).alias("_headers"),
        F.sum(F.col(LENGTH) + 1).alias("_bytes"), odd.alias("_odd"),
    ).collect()
    scan.rows, scan.first_index, scan.long_lines, scan.records = {}, {}, {}, {}
    before: dict[str, int] = {}
    consumed: dict[str, int] = {}
    for r in sorted(rows, key=lambda r: (r[T.SOURCE_FILE], r[SPLIT])):
        f = r[T.SOURCE_FILE]
        earlier = before.get(f, 0)  # lines of the file's earlier splits
        scan.first_index[(f, r[SPLIT])] = earlier + 1 - r["_first"]
        before[f] = earlier + r["_n"]
        scan.rows[f] = scan.rows.get(f, 0) + r["_n"] - r["_headers"]
        consumed[f] = consumed.get(f, 0) + r["_bytes"]
    for f in scan.files:
        if _skipped_bytes(spark, f, consumed.get(f, 0)):
            try:
                scan.long_lines[f] = _skipped_lines(spark, f, max_line_bytes, before.get(f, 0))
            except Exception as e:  # noqa: BLE001 - its stream ends early (an empty or truncated gzip): damaged
                raise UnreadableFile(rejected_for(spark, f, *_java_error(e))) from e
            log.warning("%s: %d line(s) longer than %d bytes (line_too_long)", f, len(scan.long_lines[f]),
                        max_line_bytes)
    odd_lines: dict[str, list[int]] = {}
    for r in rows:
        f, first = r[T.SOURCE_FILE], scan.first_index[(r[T.SOURCE_FILE], r[SPLIT])]
        odd_lines.setdefault(f, []).extend(_line_of(pos + first, scan.long_lines.get(f, [])) for pos in r["_odd"])
    for f, odd_ones in odd_lines.items():
        spans = _quoted_records(sorted(odd_ones), [ln.line for ln in scan.long_lines.get(f, [])])
        if spans:
            scan.records[f] = spans
            scan.rows[f] -= sum(last - first for first, last in spans)


def _line_of(index: int, long_lines: list[LongLine]) -> int:
    """The line number of the index-th line the read returned (`FileScan.line_number` in Python)."""
    return index + sum(1 for j, ln in enumerate(long_lines) if index >= ln.line - j)


def _quoted_records(odd: list[int], long_lines: list[int]) -> list[tuple[int, int]]:
    """(first, last) line of each record whose quoted field holds line breaks (RFC 4180), from the lines with an
    odd number of quotes, in order: each opens a quoted field the next one closes. An opening without a close
    within MAX_RECORD_LINES (a stray quote) joins nothing and the next odd line opens instead; a record does
    not span a line too long to read."""
    spans, opening = [], None
    for line in odd:
        if opening is None or line - opening + 1 > MAX_RECORD_LINES or any(opening < x < line for x in long_lines):
            opening = line
        else:
            spans.append((opening, line))
            opening = None
    return spans


def _skipped_bytes(spark: SparkSession, file: str, consumed: int) -> bool:
    """Did the read skip bytes of `file`? It consumed each line and its \\n (the last line may lack one): a
    plain file is complete when that is its size (or one more), a gzip file when its trailer's size agrees
    modulo 2^32 (a multi-member gzip may not: then the file is searched, which finds the truth). Files of
    other codecs cannot tell, so they are always searched."""
    fs, path = _fs_path(spark, file)
    size = fs.getFileStatus(path).getLen()
    codec = spark._jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        spark._jsc.hadoopConfiguration()).getCodec(path)
    if codec is None:
        return consumed - size not in (0, 1)
    if codec.getClass().getSimpleName() != "GzipCodec" or size < 4:
        return True
    stream = fs.open(path)
    try:
        stream.seek(size - 4)
        trailer = bytes(stream.readNBytes(4))
    finally:
        stream.close()
    return (consumed - int.from_bytes(trailer, "little")) % _GZIP_SIZE_MOD not in (0, 1)


def _skipped_lines(spark: SparkSession, file: str, max_line_bytes: int, returned: int) -> list[LongLine]:
    """The lines of `file` the read skipped, given that it returned `returned` lines: the longest of its lines
    longer than max_line_bytes. Hadoop skips by length alone (its bytes with the line break), so the skipped
    lines are the longest ones; a count that no length bound explains is an error, not a guess."""
    candidates, total = find_long_lines(spark, file, max_line_bytes)
    skipped = total - returned
    ranked = sorted(candidates, key=lambda ln: -ln.consumed)
    if not 0 <= skipped <= len(ranked) or (0 < skipped < len(ranked) and
                                            ranked[skipped - 1].consumed == ranked[skipped].consumed):
        raise RuntimeError(f"{file}: the read returned {returned} of {total} lines, which no line length "
                           f"explains ({len(ranked)} longer than {max_line_bytes} bytes)")
    return sorted(ranked[:skipped], key=lambda ln: ln.line)


def find_long_lines(spark: SparkSession, file: str, max_line_bytes: int) -> tuple[list[LongLine], int]:
    """(the lines longer than max_line_bytes, the number of lines), streamed in bounded chunks: no line is ever
    held whole."""
    found: list[LongLine] = []
    line, length, prefix = 1, 0, bytearray()
    stream = _open(spark, file)
    try:
        while True:
            chunk = bytes(stream.readNBytes(_CHUNK))
            if not chunk:
                break
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                piece = chunk[start:] if end < 0 else chunk[start:end]
                prefix += piece[: LONG_LINE_PREFIX_BYTES - len(prefix)]
                length += len(piece)
                if end < 0:
                    break
                if length > max_line_bytes:
                    found.append(LongLine(file, line, length, bytes(prefix)))
                line, length, prefix, start = line + 1, 0, bytearray(), end + 1
    finally:
        stream.close()
    if length > max_line_bytes:  # a last line without \n
        found.append(LongLine(file, line, length, bytes(prefix), ended=False))
    return found, line - (0 if length else 1)


def rejected_for(spark: SparkSession, file: str, reason: str, error_class: str) -> Rejected:
    try:
        fs, path = _fs_path(spark, file)
        status = fs.getFileStatus(path)
        size, modified = status.getLen(), status.getModificationTime()
    except Exception:  # noqa: BLE001 - a file that vanished is still reported, without its size
        size, modified = -1, 0
    one_line = " ".join(str(reason).split())
    return Rejected(file, size, modified, one_line[:500], error_class)


def unreadable_file(spark: SparkSession, error: Exception, files: list[str]) -> Rejected | None:
    """The file of `files` a Spark read failed on (Spark's FAILED_READ_FILE error names it), as a Rejected with
    the deepest cause's class and message; None when the error is about no file of `files`."""
    java = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
    path, chain = None, []
    while java is not None:
        chain.append(java)
        if path is None and _condition(java).startswith("FAILED_READ_FILE"):
            path = java.getMessageParameters().get("path")
        java = java.getCause()
    if path is None:
        return None
    wanted = _same_file_key(path)
    match = next((f for f in files if _same_file_key(f) == wanted), None)
    if match is None:
        return None
    root = chain[-1]
    return rejected_for(spark, match, root.getMessage() or _condition(chain[0]), root.getClass().getName())


@contextmanager
def quiet_task_errors(spark: SparkSession):
    """Silence the loggers that print a failed task's Java stack trace (local mode prints them on the
    console), so a damaged file reaches the user as one line; restored afterwards."""
    jvm = spark._jvm
    configurator, manager = jvm.org.apache.logging.log4j.core.config.Configurator, jvm.org.apache.logging.log4j.LogManager
    before = {name: manager.getLogger(name).getLevel() for name in _TASK_ERROR_LOGGERS}
    for name in _TASK_ERROR_LOGGERS:
        configurator.setLevel(name, jvm.org.apache.logging.log4j.Level.OFF)
    try:
        yield
    finally:
        for name, level in before.items():
            configurator.setLevel(name, level)


def new_rejections(lake: Lake, rejected: list[Rejected]) -> list[Rejected]:
    """The rejections bronze.rejected_files does not hold yet (the same file, size and time): a rerun that finds
    the same damaged file reports it again but adds no row."""
    if not rejected or not lake.exists(T.BRONZE_REJECTED_FILES):
        return list(rejected)
    known = lake.read(T.BRONZE_REJECTED_FILES).where(F.col(T.SOURCE_FILE).isin([r.file for r in rejected]))
    seen = {tuple(r) for r in known.select(T.SOURCE_FILE, T.FILE_SIZE, F.unix_millis(T.MODIFIED_AT)).collect()}
    return [r for r in rejected if (r.file, r.size, r.modified) not in seen]


def rejected_rows(spark: SparkSession, rejected: list[Rejected], batch_id: str, at: datetime) -> DataFrame:
    """bronze.rejected_files rows for `rejected`."""
    schema = ST.StructType([
        ST.StructField(T.SOURCE_FILE, ST.StringType()), ST.StructField(T.FILE_SIZE, ST.LongType()),
        ST.StructField(T.MODIFIED_AT, ST.TimestampType()), ST.StructField(T.REASON, ST.StringType()),
        ST.StructField(T.ERROR_CLASS, ST.StringType()), ST.StructField(T.BATCH_ID, ST.StringType()),
        ST.StructField(T.REJECTED_AT, ST.TimestampType()),
    ])
    rows = [(r.file, r.size, r.modified, r.reason, r.error_class, batch_id) for r in rejected]
    df = spark.createDataFrame(rows, "f string, s long, m long, r string, e string, b string")
    return df.select(F.col("f").alias(T.SOURCE_FILE), F.col("s").alias(T.FILE_SIZE),
                     F.timestamp_millis("m").alias(T.MODIFIED_AT), F.col("r").alias(T.REASON),
                     F.col("e").alias(T.ERROR_CLASS), F.col("b").alias(T.BATCH_ID),
                     F.lit(at).cast("timestamp").alias(T.REJECTED_AT)).to(schema)


def _java_error(e: Exception) -> tuple[str, str]:
    """(message, class) of an exception's deepest Java cause, or of the Python exception itself."""
    java = getattr(e, "java_exception", None) or getattr(e, "_origin", None)
    while java is not None and java.getCause() is not None:
        java = java.getCause()
    if java is None:
        return str(e), type(e).__name__
    return java.getMessage() or "", java.getClass().getName()


def _condition(java) -> str:
    try:
        return java.getCondition() or ""
    except Exception:  # noqa: BLE001 - not a SparkThrowable
        return ""


def _same_file_key(name: str) -> str:
    """A path as both Spark's error (file:///x, URL-encoded) and Hadoop's listing (file:/x) may spell it."""
    return re.sub(r"^file:/+", "file:/", unquote(name))


def _fs_path(spark: SparkSession, file: str):
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(file)
    return path.getFileSystem(spark._jsc.hadoopConfiguration()), path


def _open(spark: SparkSession, file: str):
    """The file's decompressed byte stream (gzip and the other Hadoop codecs, as Spark reads them)."""
    fs, path = _fs_path(spark, file)
    stream = fs.open(path)
    codec = spark._jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        spark._jsc.hadoopConfiguration()).getCodec(path)
    return stream if codec is None else codec.createInputStream(stream)
