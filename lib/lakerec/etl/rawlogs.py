"""Realistic raw event logs at scale (millions of JSON lines), for benchmarks and soak tests.

Unlike the demo (small, every line's dirt known), this aims at the shape of a production drop: skewed item
popularity (Zipf), skewed user activity, sessions of a few to a few dozen events, client retries, duplicate
deliveries, crawlers, late events (a day or more behind the file they arrive in) and a share of bad rows of
every quarantine reason. Each file is written by its own process from its own seed (no shared state), so
generating is parallel and deterministic: the same arguments give the same bytes.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

EVENT_TYPES = ("view", "click", "cart", "purchase")
EVENT_TYPE_WEIGHTS = (0.72, 0.16, 0.08, 0.04)
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
BOT_AGENT = "Mozilla/5.0 (compatible; ScaleCrawlerBot/1.0)"
# shares of all lines; the rest are clean events
RATES = {"duplicate": 0.01, "retry": 0.01, "bot": 0.001, "late": 0.01, "bad": 0.01}  # bot: bursts of BOT_BURST
BOT_BURST = 20
BAD_KINDS = ("cut", "missing_user_id", "bad_timestamp", "impossible_timestamp", "unknown_event_type",
             "wrong_type", "empty_id", "id_too_long")
SESSION_GAP_S = (5, 240)
ZIPF_ITEMS = 1.1
USER_ACTIVITY_SIGMA = 1.2


@dataclass(frozen=True)
class RawLogSpec:
    events: int                      # lines in all, dirt included
    files: int = 8
    users: int | None = None         # default: events / 40
    items: int | None = None         # default: events / 100 (at least 1,000)
    days: int = 7
    end: datetime | None = None      # the newest event time; default: an hour ago
    gzip: bool = False
    seed: int = 11


def generate_raw_logs(spec: RawLogSpec, out_dir: str | Path, workers: int | None = None) -> dict[str, int]:
    """Write `spec.files` files of JSON lines into `out_dir` in parallel; return the line counts by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    end = spec.end or datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    per_file = [spec.events // spec.files + (i < spec.events % spec.files) for i in range(spec.files)]
    tasks = [(spec, i, n, end.timestamp(), str(out)) for i, n in enumerate(per_file)]
    totals: dict[str, int] = {}
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        for counts in pool.map(_write_file, tasks):
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
    return totals


def _write_file(task: tuple) -> dict[str, int]:
    spec, index, n, end_ts, out_dir = task
    rng = np.random.default_rng([spec.seed, index])
    pick = random.Random(f"{spec.seed}-{index}")
    users = spec.users or max(10, spec.events // 40)
    items = spec.items or max(1000, spec.events // 100)
    # files cover consecutive slices of the period, in order: file i holds the i-th slice's events
    span = spec.days * 86400 / spec.files
    start = end_ts - spec.days * 86400 + index * span
    # every per-line draw made up front, vectorised: the loop below only assembles lines
    # users: log-normal activity (a long tail, no single user dominating); items: Zipf ranks (the far tail
    # folded back in), scattered over the ids so rank 1 is not id 0
    activity = np.random.default_rng(spec.seed).lognormal(0.0, USER_ACTIVITY_SIGMA, users)  # same in every file
    user_of = rng.choice(users, size=n, p=activity / activity.sum())
    item_of = (rng.zipf(ZIPF_ITEMS, size=n) - 1) % items * 104729 % items
    type_of = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_TYPE_WEIGHTS)
    gap_of = rng.integers(*SESSION_GAP_S, size=n)
    new_session = rng.random(n) < 0.12  # sessions of 8 events on average
    session_start = start + rng.random(n) * span
    kinds = rng.choice(["clean", *RATES], size=n, p=[1 - sum(RATES.values()), *RATES.values()])
    lines: list[str] = []
    counts = dict.fromkeys(["clean", *RATES, *BAD_KINDS], 0)
    t, u, s = start, 0, 0
    while len(lines) < n:
        i, room = len(lines), n - len(lines)
        if new_session[i] or i == 0:  # a new session: a user at a random time of the file's slice
            u, s, t = int(user_of[i]), s + 1, float(session_start[i])
        t += int(gap_of[i])
        event = {"event_id": f"e{spec.seed}-{index}-{i}", "user_id": f"u{u}", "item_id": f"i{item_of[i]}",
                 "event_type": EVENT_TYPES[type_of[i]], "ts": min(t, end_ts),
                 "session_id": f"s{index}-{s}", "user_agent": AGENTS[u % len(AGENTS)]}
        kind = str(kinds[i])
        if kind == "duplicate" and lines:
            lines.append(lines[-1])  # the previous line delivered again
        elif kind == "retry" and room >= 2:  # the event, then the client's retry of it a few seconds later
            lines.append(_line(event, pick))
            lines.append(_line({**event, "event_id": event["event_id"] + "r", "ts": event["ts"] + pick.randint(1, 5)},
                               pick))
            counts["clean"] += 1
        elif kind == "bot":  # a burst of one event a second
            bot = {**event, "user_id": f"bot{pick.randint(1, 5)}", "user_agent": BOT_AGENT}
            burst = min(BOT_BURST, room)
            for j in range(burst):
                lines.append(_line({**bot, "event_id": f"{event['event_id']}b{j}", "ts": event["ts"] + j,
                                    "item_id": f"i{pick.randrange(items)}"}, pick))
            counts[kind] += burst - 1
        elif kind == "late":
            lines.append(_line({**event, "ts": event["ts"] - pick.randint(86400, 3 * 86400)}, pick))
        elif kind == "bad":
            kind = pick.choice(BAD_KINDS)
            lines.append(_bad_line(kind, event, pick))
        else:
            kind = "clean"
            lines.append(_line(event, pick))
        counts[kind] += 1
    _write(Path(out_dir) / f"events-{index:04d}.jsonl{'.gz' if spec.gzip else ''}", lines)
    return {k: v for k, v in counts.items() if v}


def _line(e: dict, pick: random.Random) -> str:
    """One JSON line (its strings need no escaping); the time as ISO-8601 with Z or an offset, epoch seconds or
    epoch milliseconds."""
    ts = e["ts"]
    form = pick.random()
    if form < 0.4:
        raw = f'"{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))}"'
    elif form < 0.6:
        raw = f'"{time.strftime("%Y-%m-%dT%H:%M:%S+02:00", time.gmtime(ts + 7200))}"'
    elif form < 0.8:
        raw = str(int(ts))
    else:
        raw = str(int(ts * 1000))
    extra = f',"value":{json.dumps(e["value"])}' if "value" in e else ""
    return (f'{{"event_id":"{e["event_id"]}","user_id":{json.dumps(e.get("user_id"))},"item_id":"{e["item_id"]}",'
            f'"event_type":"{e["event_type"]}","ts":{raw},"session_id":"{e["session_id"]}",'
            f'"user_agent":"{e["user_agent"]}"{extra}}}')


def _bad_line(kind: str, e: dict, pick: random.Random) -> str:
    """A line with one problem of `kind`."""
    if kind == "cut":
        text = _line(e, pick)
        return text[: pick.randint(5, len(text) - 2)]
    bad = dict(e)
    if kind == "missing_user_id":
        del bad["user_id"]
    elif kind == "bad_timestamp":
        return json.dumps({**bad, "ts": pick.choice(["yesterday", "2026-13-45T99:00:00Z", "n/a"])})
    elif kind == "impossible_timestamp":
        return json.dumps({**bad, "ts": pick.choice(["1980-01-01T00:00:00Z", 4102444800])})
    elif kind == "unknown_event_type":
        bad["event_type"] = pick.choice(["hover", "share"])
    elif kind == "wrong_type":
        bad["value"] = "12,5 EUR"
    elif kind == "empty_id":
        bad["item_id"] = " "
    elif kind == "id_too_long":
        bad["user_id"] = "u" * 1000
    return _line(bad, pick)


def _write(path: Path, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(data)
    else:
        path.write_bytes(data)
