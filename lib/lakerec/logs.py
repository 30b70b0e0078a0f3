"""Logs and progress: every log record carries the pipeline run id, the stage and the MLflow run id; text for
people, one JSON object per line for log shippers; progress bars only where someone watches.

`configure(cfg.log)` is called once per process by the CLI (jobs/common.py); `run_stage` and the runner set the
context with `context(...)`, so any `logging.getLogger("lakerec...")` call made inside a stage is stamped
without passing ids around.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Iterable, Iterator, TypeVar

from tqdm import tqdm

from lakerec.config import LogConf

FIELDS = ("run_id", "stage", "mlflow_run_id")  # what every record carries (None outside a run)
_CONTEXT: contextvars.ContextVar[dict] = contextvars.ContextVar("lakerec_log_context", default={})
_HANDLER_NAME = "lakerec"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(stage)s %(run_id)s]: %(message)s"
T = TypeVar("T")


@contextlib.contextmanager
def context(**fields: str | None) -> Iterator[None]:
    """Stamp the records logged inside the block with these fields (nested blocks add to the outer ones)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current() -> dict:
    """The fields records get now: run_id, stage, mlflow_run_id (None where unset)."""
    return {k: _CONTEXT.get().get(k) for k in FIELDS}


class ContextFilter(logging.Filter):
    """Adds run_id, stage and mlflow_run_id to every record the handler sees (a library's records too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in current().items():
            if not hasattr(record, k):
                setattr(record, k, v if v is not None else "-")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (UTC, ISO-8601), level, logger, msg, run_id, stage, mlflow_run_id[, exc]."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
            **{k: (None if getattr(record, k, "-") == "-" else getattr(record, k)) for k in FIELDS},
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(conf: LogConf, stream: IO[str] | None = None) -> logging.Handler:
    """One stderr handler on the root logger (replacing the one an earlier call installed): lakerec at INFO
    (DEBUG when verbose), every other library at WARNING (py4j and horovod flood the output otherwise).

    On a terminal (text format, not verbose) the handler shows warnings and errors only: a person there reads the
    stage lines and the summary on stdout, which say what the INFO records say. Files, schedulers and log
    shippers (not a terminal, or json) get every INFO record, stamped with the run ids."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    if conf.format == "text" and not conf.verbose and is_terminal(stream):
        handler.setLevel(logging.WARNING)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if conf.format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if conf.verbose else logging.WARNING)
    logging.getLogger("lakerec").setLevel(logging.DEBUG if conf.verbose else logging.INFO)
    for noisy in ("py4j", "urllib3", "matplotlib", "alembic", "git"):  # DEBUG chatter even under --verbose
        logging.getLogger(noisy).setLevel(logging.INFO if conf.verbose else logging.WARNING)
    # MLflow brings its own stderr handler (another line format, INFO chatter): its records go through ours
    mlflow_logger = logging.getLogger("mlflow")
    for h in list(mlflow_logger.handlers):
        mlflow_logger.removeHandler(h)
    mlflow_logger.propagate = True
    mlflow_logger.setLevel(logging.INFO if conf.verbose else logging.WARNING)
    return handler


def spark_log_level(conf: LogConf) -> str:
    """Spark's own log level: log.spark_level (LAKEREC_SPARK_LOG_LEVEL), else ERROR (quiet), WARN with --verbose."""
    return conf.spark_level or ("WARN" if conf.verbose else "ERROR")


def progress_enabled(conf: LogConf, stream: IO[str] | None = None) -> bool:
    """Draw progress bars? `always`/`never` say so; `auto`: when the stream (stderr) is a terminal or the run
    is verbose, so scheduler and CI logs get no carriage-return noise."""
    if conf.progress != "auto":
        return conf.progress == "always"
    return conf.verbose or is_terminal(stream or sys.stderr)


def is_terminal(stream: IO[str]) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


# A file gets a bar's redraws as lines, this many seconds apart for Spark's stage bar (tqdm's epoch bar redraws
# once an epoch)
FILE_REDRAW_SECONDS = 10


def redraws_as_lines(segment: str, stream: IO[str]) -> str:
    """What to write to `stream` for one segment of a progress-drawing output, a segment being the text up to and
    including a "\r" or "\n" (how Horovod and `lakerec.spark` pass output on). A terminal gets it unchanged; a
    file (`log.progress: always`) gets each redraw ("...\r") as a line of its own and no blank clearing redraws,
    so a log holds periodic lines, not carriage-return bars interleaved on one line."""
    if not segment.endswith("\r") or is_terminal(stream):
        return segment
    text = segment.strip("\r").rstrip()
    return text + "\n" if text.strip() else ""


def bar(iterable: Iterable[T], enabled: bool, stream: IO[str] | None = None, **tqdm_kwargs) -> "tqdm[T]":
    """A tqdm bar over `iterable` on stderr; when not `enabled` it draws nothing (set_postfix, close: no-ops)."""
    return tqdm(iterable, file=stream or sys.stderr, disable=not enabled, dynamic_ncols=True, **tqdm_kwargs)
