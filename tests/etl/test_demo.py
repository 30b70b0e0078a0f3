"""The demo generator: deterministic files, dirt in the counts it reports, and a sequential signal."""
import collections
import json
import random
import re

from lakerec.etl.demo import BOT_AGENT, generate_demo, make_catalog, simulate
from tests.etl.conftest import etl_cfg


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*.jsonl"))}


def test_same_seed_same_bytes_and_rerun_rewrites_identically(tmp_path):
    demo = etl_cfg(tmp_path / "lake").demo
    generate_demo(demo, tmp_path / "a" / "events", tmp_path / "a" / "items")
    generate_demo(demo, tmp_path / "b" / "events", tmp_path / "b" / "items")
    first = _files(tmp_path / "a")
    assert first == _files(tmp_path / "b")
    (tmp_path / "a" / "events" / "1999-01-01.jsonl").write_text("stale\n")  # a day an earlier run wrote
    generate_demo(demo, tmp_path / "a" / "events", tmp_path / "a" / "items")
    assert _files(tmp_path / "a") == first
    other = etl_cfg(tmp_path / "lake", "demo.seed=8").demo
    generate_demo(other, tmp_path / "c" / "events", tmp_path / "c" / "items")
    assert _files(tmp_path / "c") != first


def test_dirt_in_the_files_matches_the_reported_counts(tmp_path):
    demo = etl_cfg(tmp_path / "lake").demo
    s = generate_demo(demo, tmp_path / "events", tmp_path / "items")
    lines = [line for p in sorted((tmp_path / "events").glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert len(lines) == s.clean_events + sum(s.dirt.values())
    records, malformed = [], 0
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            malformed += 1
    assert malformed == s.dirt["malformed"]
    by_id = collections.Counter(json.dumps(r, sort_keys=True) for r in records)
    assert sum(n - 1 for n in by_id.values()) == s.dirt["duplicate"]
    assert sum(r["user_agent"] == BOT_AGENT for r in records) == s.dirt["bot"] >= 60
    assert sum("user_id" not in r or not r["user_id"] for r in records) == s.dirt["missing_user_id"]
    assert sum("item_id" not in r or not r["item_id"] for r in records) == s.dirt["missing_item_id"]
    assert sum(r.get("event_type") in ("wishlist", "share", "hover") for r in records) == s.dirt["unknown_event_type"]
    assert sum(not isinstance(r.get("value", 0.0), float) for r in records) == s.dirt["wrong_type"]
    assert sum((r.get("user_id") or "").startswith(" ") or r.get("event_type", "").isupper() for r in records) >= 1
    # every kind is present at least once, and timestamps come in each format
    assert all(n >= 1 for n in s.dirt.values()) and set(s.dirt) >= {
        "duplicate", "retry", "bot", "malformed", "bad_timestamp", "too_old", "future", "missing_user_id",
        "missing_item_id", "missing_event_type", "missing_ts", "unknown_event_type", "wrong_type",
        "empty_id", "id_too_long"}
    ts = [r.get("ts") for r in records]
    assert any(isinstance(t, str) and t.endswith("Z") for t in ts)
    assert any(isinstance(t, str) and re.search(r"[+-]\d{2}:\d{2}$", t) for t in ts)
    assert any(isinstance(t, int) and t < 10**11 for t in ts) and any(isinstance(t, int) and t >= 10**11 for t in ts)


def test_catalog_is_readable_and_reports_its_dirt(tmp_path):
    demo = etl_cfg(tmp_path / "lake").demo
    s = generate_demo(demo, tmp_path / "events", tmp_path / "items")
    lines = (tmp_path / "items" / "items.jsonl").read_text().splitlines()
    assert len(lines) == s.items + 3 + s.item_dirt["duplicates"]
    good = []
    for line in lines:
        try:
            good.append(json.loads(line))
        except ValueError:
            pass
    titled = [r for r in good if r.get("item_id") and r.get("title")]
    assert all(re.fullmatch(r"The \w+ \w+( \d+)? \(\w+\)", r["title"]) for r in titled)
    assert all(r["categories"][0] in demo.categories for r in titled)
    assert sum(r.get("description", "").endswith("(revised)") for r in good) == s.item_dirt["duplicates"]


def test_next_item_is_predictable_from_the_last_one_far_better_than_by_popularity(tmp_path):
    """Leave-last-out on the clean events: a bigram model (what a sequence model can at least learn) against
    the most popular items."""
    demo = etl_cfg(tmp_path / "lake").demo
    rng = random.Random(demo.seed)
    events, _ = simulate(demo, make_catalog(demo, rng), rng)
    seqs = collections.defaultdict(list)
    for e in events:
        seqs[e["user_id"]].append(e["item_id"])
    follows, popular = collections.defaultdict(collections.Counter), collections.Counter()
    for s in seqs.values():
        for a, b in zip(s[:-2], s[1:-1]):
            follows[a][b] += 1
        popular.update(s[:-1])
    top = {i for i, _ in popular.most_common(10)}
    bigram_hits = sum(s[-1] in {i for i, _ in follows[s[-2]].most_common(10)} for s in seqs.values())
    popular_hits = sum(s[-1] in top for s in seqs.values())
    assert bigram_hits >= 2 * popular_hits and bigram_hits / len(seqs) > 0.5


def test_generate_job_writes_the_default_raw_folders_and_skips_on_real_input(tmp_path, spark):
    import jobs.generate
    from tests.etl.conftest import run_job

    cfg = etl_cfg(tmp_path / "lake", f"input.items.path={tmp_path / 'my-catalog.jsonl'}")
    result = run_job(jobs.generate, cfg, spark)
    assert result.skipped is None and result.metrics["dirt.bot"] >= 60
    assert sorted(p.name for p in (tmp_path / "lake" / "raw" / "events").iterdir())[0] == f"{cfg.demo.start}.jsonl"
    assert not (tmp_path / "lake" / "raw" / "items").exists()  # a configured catalog is never overwritten
    real = etl_cfg(tmp_path / "lake2", f"input.events.path={tmp_path / 'events'}")
    skipped = run_job(jobs.generate, real, spark)
    assert skipped.skipped == f"input.events.path is set: {tmp_path / 'events'}"
    assert not (tmp_path / "lake2").exists()


def test_input_paths_default_to_the_raw_folders_of_the_lake(tmp_path):
    from lakerec.etl.sources import events_input_path, items_input_path

    remote = etl_cfg("s3://bucket/lake/")
    assert (events_input_path(remote), items_input_path(remote)) == ("s3://bucket/lake/raw/events",
                                                                     "s3://bucket/lake/raw/items")
    given = etl_cfg(tmp_path, "input.events.path=/data/e.jsonl")
    assert (events_input_path(given), items_input_path(given)) == ("/data/e.jsonl", f"{tmp_path}/raw/items")
