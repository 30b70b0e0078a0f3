"""Logs and progress: JSON lines stamped with the run id and stage of a real stage run, --verbose levels,
progress bars only on a terminal unless forced (ours and Spark's own console bar)."""
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from click.testing import CliRunner

from jobs.cli import main as cli
from lakerec import logs
from lakerec.config import LogConf
from tests.conftest import CONF_DIR, REPO


@pytest.fixture
def restore_logging():
    """The CLI installs a handler on the root logger (on CliRunner's stream): take it off again afterwards."""
    root, ours = logging.getLogger(), logging.getLogger("lakerec")
    levels = root.level, ours.level
    yield
    for h in [h for h in root.handlers if h.get_name() == "lakerec"]:
        root.removeHandler(h)
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


def _generate(tmp_path, *flags):
    """`lakerec generate` in this process (the suite's Spark session is reused), stderr kept apart."""
    runner = CliRunner()
    out = runner.invoke(cli, ["generate", "--profile", "test", "--conf-dir", str(CONF_DIR),
                              "--set", f"lake.root={tmp_path / 'lake'}", *flags], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out


def _mlflow_run_ids(tmp_path, stage):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'lake' / 'mlflow.db'}")
    runs = MlflowClient().search_runs([mlflow.get_experiment_by_name("lakerec").experiment_id],
                                      f"tags.`lakerec.stage` = '{stage}'")
    return [r.info.run_id for r in runs]


def test_json_lines_carry_the_run_id_and_stage_of_a_real_stage_run(spark, tmp_path, restore_logging):
    out = _generate(tmp_path, "--log-format", "json")
    records = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]  # every line is JSON
    assert {"ts", "level", "logger", "msg", "run_id", "stage", "mlflow_run_id"} <= set(records[0])
    (run_id,) = _mlflow_run_ids(tmp_path, "generate")
    in_stage = [r for r in records if r["stage"] == "generate"]
    assert any(r["logger"] == "lakerec.generate" and r["msg"].startswith("demo drops") for r in in_stage)
    assert any("done in" in r["msg"] for r in in_stage)
    # a stage run by itself is its own pipeline run: both ids are its MLflow run
    assert {(r["run_id"], r["mlflow_run_id"]) for r in in_stage} == {(run_id, run_id)}
    assert "[generate] done" in out.stdout  # the console summary stays on stdout


def test_verbose_raises_lakerec_to_debug_and_spark_to_warn(spark, tmp_path, restore_logging):
    quiet = _generate(tmp_path)
    assert logging.getLogger("lakerec").level == logging.INFO
    assert " DEBUG " not in quiet.stderr and "INFO lakerec.generate [generate " in quiet.stderr
    loud = _generate(tmp_path, "--verbose")
    assert logging.getLogger("lakerec").level == logging.DEBUG
    assert " DEBUG lakerec [generate " in loud.stderr
    assert logs.spark_log_level(LogConf()) == "ERROR" and logs.spark_log_level(LogConf(verbose=True)) == "WARN"
    assert logs.spark_log_level(LogConf(verbose=True, spark_level="INFO")) == "INFO"  # log.spark_level wins


def test_our_bars_reach_a_pipe_only_when_forced():
    for conf, drawn in [(LogConf(), False), (LogConf(progress="always"), True), (LogConf(progress="never"), False)]:
        stream = io.StringIO()  # not a terminal, like a scheduler's log
        for _ in logs.bar(range(3), logs.progress_enabled(conf, stream), stream=stream, desc="train"):
            pass
        assert ("train" in stream.getvalue() and "3/3" in stream.getvalue()) == drawn, conf


_HELD_JOB = textwrap.dedent("""
    import os, sys, time
    from lakerec.config import load_config
    from lakerec.spark import get_spark
    release = sys.argv[1]
    cfg = load_config("test", sys.argv[2:], conf_dir={conf!r})
    spark = get_spark(cfg)
    print("showConsoleProgress=" + spark.sparkContext.getConf().get("spark.ui.showConsoleProgress"), flush=True)
    def held(batches):  # each task runs until the test says go (bounded), not for a guessed time
        deadline = time.monotonic() + 240
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield from batches
    spark.range(2, numPartitions=2).mapInPandas(held, "id long").count()
    spark.stop()
""")


@pytest.mark.slow
@pytest.mark.parametrize("progress, drawn", [("auto", False), ("always", True)])
def test_spark_console_progress_reaches_a_pipe_only_when_forced(tmp_path, progress, drawn):
    """The job's tasks wait until the test releases them: once Spark's bar has reached the pipe (always), or at
    once when the session says it has no console progress (auto on a pipe: Spark then builds no bar at all)."""
    release = tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-c", _HELD_JOB.format(conf=str(CONF_DIR)), str(release),
                             f"lake.root={tmp_path}", f"log.progress={progress}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    chunks: list[str] = []

    def watch_stderr():  # the bar ends its lines with a carriage return: read raw chunks, not lines
        for chunk in iter(lambda: os.read(proc.stderr.fileno(), 4096), b""):
            chunks.append(chunk.decode(errors="replace"))
            if "[Stage " in "".join(chunks[-2:]):
                release.touch()

    watcher = threading.Thread(target=watch_stderr, daemon=True)
    watcher.start()
    try:
        setting = proc.stdout.readline().decode().strip()  # the session is up
        if setting == "showConsoleProgress=false":
            release.touch()
        proc.wait(timeout=300)
    finally:
        release.touch()
        proc.kill()
    watcher.join(timeout=30)
    stderr = "".join(chunks)
    assert proc.returncode == 0, stderr[-3000:]
    assert setting == f"showConsoleProgress={str(drawn).lower()}", stderr[-2000:]
    assert ("[Stage " in stderr) == drawn, stderr[-2000:]
    # a pipe is a file: the bar's redraws arrive as lines (every FILE_REDRAW_SECONDS), no carriage returns
    assert "\r" not in stderr, stderr[-2000:]
    assert any(line.startswith("[Stage ") for line in stderr.splitlines()) == drawn, stderr[-2000:]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("conf, info_shown", [(LogConf(), False), (LogConf(verbose=True), True),
                                              (LogConf(format="json"), True)])
def test_a_terminal_gets_warnings_only_unless_verbose_or_json(restore_logging, conf, info_shown):
    """On a terminal the stage lines and the summary (stdout) say what the INFO records say: showing both
    printed every stage line twice. Files and log shippers keep every record."""
    for stream, shown in [(_Terminal(), info_shown), (io.StringIO(), True)]:
        logs.configure(conf, stream)
        logging.getLogger("lakerec.test").info("stage x started")
        logging.getLogger("lakerec.test").warning("a warning")
        assert ("stage x started" in stream.getvalue()) == shown, (conf, type(stream))
        assert "a warning" in stream.getvalue()


@pytest.mark.parametrize("keep", [False, True])
def test_the_jvm_stderr_forwarder_drops_horovods_rank_prefix_across_chunks(capsys, keep):
    """A rank's output reaches the driver through the JVM's stderr, a prefix per segment, in reads that need not
    end at a segment's end; log.verbose keeps the prefix."""
    from lakerec.spark import _forward

    read, write = os.pipe()
    forwarder = threading.Thread(target=_forward, args=(read, keep))
    forwarder.start()
    for chunk in ("[0]<stdout>:[train] epoch 1/2: loss 1.0\n[0]<stdout>:[train] epoch 2/2: lo",
                  "ss 0.9\n[12]<stdout>:a line with [1]<stdout>: inside\n",
                  "WARNING: Using incubator modules: jdk.incubator.vector\n",
                  "[1]<stderr>:train:  50%|#####     | 1/2\r[1]<stderr>:     \r[0]<stdout>:no line end"):
        os.write(write, chunk.encode())
    os.close(write)
    forwarder.join(timeout=10)
    os.close(read)
    err = capsys.readouterr().err  # pytest's capture is a file: the bar's redraw is a line, the clearing one gone
    if keep:
        assert err == ("[0]<stdout>:[train] epoch 1/2: loss 1.0\n[0]<stdout>:[train] epoch 2/2: loss 0.9\n"
                       "[12]<stdout>:a line with [1]<stdout>: inside\n[1]<stderr>:train:  50%|#####     | 1/2\n"
                       "[1]<stderr>:\n[0]<stdout>:no line end")
    else:
        assert err == ("[train] epoch 1/2: loss 1.0\n[train] epoch 2/2: loss 0.9\na line with [1]<stdout>: inside\n"
                       "train:  50%|#####     | 1/2\nno line end")


@pytest.mark.parametrize("segment, terminal, expected", [
    ("train:  50%|#####     | 1/2\r", True, "train:  50%|#####     | 1/2\r"),
    ("train:  50%|#####     | 1/2   \r", False, "train:  50%|#####     | 1/2\n"),
    ("\r", False, ""), ("          \r", False, ""),  # a clearing redraw leaves nothing in a file
    ("[train] epoch 1/2\n", False, "[train] epoch 1/2\n"), ("[train] epoch 1/2\n", True, "[train] epoch 1/2\n"),
])
def test_a_file_gets_progress_redraws_as_lines(segment, terminal, expected):
    stream = _Terminal() if terminal else io.StringIO()
    assert logs.redraws_as_lines(segment, stream) == expected


_JVM_START = textwrap.dedent("""
    import sys
    from lakerec.config import load_config
    from lakerec.spark import get_spark
    spark = get_spark(load_config("test", sys.argv[1:], conf_dir={conf!r}))
    spark.sparkContext._jvm.java.lang.System.err.println("a line the JVM writes to stderr")
    spark.sparkContext._jvm.java.lang.System.err.println("[1]<stdout>:a rank's line")
    spark.range(3).count()
    spark.stop()
""")


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_the_driver_jvm_starts_without_notices_and_its_stderr_still_reaches_ours(tmp_path, verbose):
    """A fresh driver JVM: no start-up chatter (the JVM's incubator notice, Spark's default-profile lines,
    the loopback-hostname WARN unless --verbose), while what the JVM does write to stderr still arrives."""
    env = {k: v for k, v in os.environ.items() if k != "LAKEREC_SPARK_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", _JVM_START.format(conf=str(CONF_DIR)), f"lake.root={tmp_path}",
                          f"log.verbose={verbose}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "a line the JVM writes to stderr" in out.stderr
    assert ("[1]<stdout>:a rank's line" in out.stderr) == verbose and "a rank's line" in out.stderr
    for notice in ("Using incubator modules", "Using Spark's default log4j profile", "Setting default log level",
                   "To adjust logging level"):
        assert notice not in out.stderr, out.stderr
    if not verbose:
        assert " WARN " not in out.stderr, out.stderr
