"""Demo raw drops: an item catalog and a few days of event logs, deterministic from demo.seed.

The behaviour has sequential structure a sequence model can learn and popularity cannot: the items of each
category form a chain, and a user mostly moves to the next item (or the one after) of a chain they like,
resuming where they left off in their previous session; about one step in six is a popular item instead.

Dirt is injected on top of the clean events, in known counts (`DemoSummary.dirt`), each kind in its own extra
line so every line has exactly one problem:
- duplicate: an exact line delivered twice (same event_id);  retry: the same user/item/type again 1-5 s later
  with a new event_id;  bot: one crawler sending an event every second for two minutes;
- malformed: truncated JSON;  bad_timestamp: unreadable text;  too_old / future: readable but impossible times
  (before etl.valid_from, decades ahead);  missing_user_id / missing_item_id / missing_event_type / missing_ts;
  unknown_event_type;  wrong_type (a value that is not a number);  empty_id (a blank user or item id);
  id_too_long (a 300-character item id);
- messy (kept, not dirt): padded ids and upper-case event types that silver normalises.
The catalog gets a malformed line, an item without a title, one without an id, and revised re-deliveries of
a few items (the later row wins). Timestamps mix ISO-8601 (Z, offsets, milliseconds), epoch seconds and epoch
milliseconds. User sessions sit in separate time slots at least an hour apart, so silver should find exactly
users x sessions_per_user sessions while days x 24 h / sessions_per_user leaves room for that.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lakerec.config import DemoConf

ADJECTIVES = [
    "Midnight", "Silent", "Crimson", "Hidden", "Last", "Broken", "Golden", "Distant", "Velvet", "Frozen",
    "Electric", "Hollow", "Wandering", "Burning", "Paper", "Iron", "Lonely", "Secret", "Falling", "Painted",
    "Restless", "Copper", "Whispering", "Northern",
]
NOUNS = [
    "Ledger", "Harbor", "Orchard", "Signal", "Garden", "Frontier", "Mirror", "Carnival", "Lantern", "Compass",
    "Station", "Canyon", "Letter", "Voyage", "Archive", "Circus", "Tide", "Engine", "Meadow", "Cipher",
    "Lighthouse", "Parade", "Summit", "Riddle",
]
EVENT_TYPES = (("view", 0.70), ("click", 0.15), ("cart", 0.10), ("purchase", 0.05))
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]
BOT_AGENT = "Mozilla/5.0 (compatible; DemoCrawlerBot/2.1; +https://example.com/bot)"
BOT_USER = "u-crawler"
BOT_EVENTS = 120                 # one a second: 60 in each of two minutes
OFFSETS = ["+02:00", "-05:00", "+05:30", "+00:00"]
STEP_NEXT, STEP_SKIP = 0.75, 0.10  # else (0.15) a popular item
EVENT_GAP_S = (30, 240)          # between a session's events: wider than any retry window
RETRY_DELAY_S = (1, 5)
SESSION_MARGIN_S = 3600          # sessions of one user stay at least this far apart (when the slots allow)
DIRT_RATES = {                   # share of the clean events, at least one line each
    "duplicate": 0.02, "retry": 0.02, "malformed": 0.005, "bad_timestamp": 0.005, "too_old": 0.004,
    "future": 0.004, "missing_user_id": 0.004, "missing_item_id": 0.004, "missing_event_type": 0.003,
    "missing_ts": 0.003, "unknown_event_type": 0.004, "wrong_type": 0.003,
    "empty_id": 0.003, "id_too_long": 0.002,
}
MESSY_RATE = 0.02
UNREADABLE_TIMES = ["yesterday", "2026-13-45T99:00:00Z", "11/02/2026 10:00", "not-a-time", "2026-11-02T25:61:00"]
IMPOSSIBLE_OLD = ["1990-06-01T12:00:00Z", 315532800]          # 1980 in epoch seconds
IMPOSSIBLE_FUTURE = ["2099-01-01T00:00:00Z", 4102444800000]   # 2100 in epoch milliseconds


@dataclass(frozen=True)
class DemoItem:
    item_id: str
    title: str
    description: str | None
    categories: list[str]
    price: float

    @property
    def category(self) -> str:
        return self.categories[0]


@dataclass
class DemoSummary:
    """What was written: clean counts (what silver should keep) and the count of each dirt kind injected."""

    users: int
    items: int
    sessions: int
    clean_events: int
    messy: int
    dirt: dict[str, int]
    item_dirt: dict[str, int]
    files: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, int]:
        return {
            "users": self.users, "items": self.items, "sessions": self.sessions, "clean_events": self.clean_events,
            "messy": self.messy, "files": len(self.files), "lines": self.clean_events + sum(self.dirt.values()),
            **{f"dirt.{k}": v for k, v in self.dirt.items()},
            **{f"items_dirt.{k}": v for k, v in self.item_dirt.items()},
        }


def generate_demo(demo: DemoConf, events_dir: str | Path, items_dir: str | Path | None) -> DemoSummary:
    """Write <events_dir>/<yyyy-mm-dd>.jsonl (one file per UTC day) and, unless items_dir is None,
    <items_dir>/items.jsonl. Rerunning with the same settings rewrites identical files; day files of an
    earlier run that this one does not write are removed (the folder belongs to the generator)."""
    rng = random.Random(demo.seed)
    catalog = make_catalog(demo, rng)
    events, sessions = simulate(demo, catalog, rng)
    messy = _mess_up(events, rng)
    lines, dirt = _event_lines(events, catalog, demo, rng)
    files = _write_days(Path(events_dir), lines)
    item_dirt: dict[str, int] = {}
    if items_dir is not None:
        item_lines, item_dirt = _item_lines(catalog, rng)
        files.append(_write(Path(items_dir) / "items.jsonl", item_lines))
    return DemoSummary(users=demo.users, items=len(catalog), sessions=sessions, clean_events=len(events),
                       messy=messy, dirt=dirt, item_dirt=item_dirt, files=files)


def make_catalog(demo: DemoConf, rng: random.Random) -> list[DemoItem]:
    """Items i0001.. spread evenly over the categories; readable unique titles such as
    "The Midnight Ledger (noir)"; most have a description, some a second category."""
    names = [(a, n) for a in ADJECTIVES for n in NOUNS]
    rng.shuffle(names)
    items = []
    for i in range(demo.items):
        adj, noun = names[i % len(names)]
        part = f" {i // len(names) + 1}" if i >= len(names) else ""
        category = demo.categories[i % len(demo.categories)]
        others = [c for c in demo.categories if c != category]
        categories = [category] + ([rng.choice(others)] if others and rng.random() < 0.2 else [])
        description = (f"A {category} story of a {adj.lower()} {noun.lower()} and what it hides."
                       if rng.random() < 0.7 else None)
        items.append(DemoItem(f"i{i + 1:04d}", f"The {adj} {noun}{part} ({category})", description,
                              categories, round(rng.uniform(3, 40), 2)))
    return items


def simulate(demo: DemoConf, catalog: list[DemoItem], rng: random.Random) -> tuple[list[dict], int]:
    """The clean events (dicts with a true epoch-second `ts`), sorted by time, and the number of sessions."""
    chains: dict[str, list[DemoItem]] = {}
    for item in catalog:
        chains.setdefault(item.category, []).append(item)
    for chain in chains.values():
        rng.shuffle(chain)
    by_popularity = rng.sample(catalog, len(catalog))
    weights = [1.0 / (rank + 1) for rank in range(len(catalog))]
    start = int(datetime.combine(demo.start, datetime.min.time(), timezone.utc).timestamp())
    slot = demo.days * 86400 // demo.sessions_per_user
    longest = demo.events_per_session * 3 // 2 * EVENT_GAP_S[1]
    events: list[dict] = []
    for u in range(demo.users):
        user = f"u{u + 1:04d}"
        liked = rng.sample(sorted(chains), k=min(len(chains), rng.choice([1, 2])))
        position = {c: rng.randrange(len(chains[c])) for c in liked}
        agent = rng.choice(BROWSERS)
        for s in range(demo.sessions_per_user):
            ts = start + s * slot + rng.randrange(max(1, slot - longest - SESSION_MARGIN_S))
            category = rng.choice(liked)
            n = rng.randint(max(1, demo.events_per_session // 2), demo.events_per_session * 3 // 2)
            for _ in range(n):
                r = rng.random()
                if r < STEP_NEXT + STEP_SKIP:
                    position[category] += 1 if r < STEP_NEXT else 2
                    chain = chains[category]
                    item = chain[position[category] % len(chain)]
                else:
                    item = rng.choices(by_popularity, weights)[0]
                event_type = rng.choices([t for t, _ in EVENT_TYPES], [w for _, w in EVENT_TYPES])[0]
                events.append({"user_id": user, "item_id": item.item_id, "event_type": event_type, "ts": ts,
                               "value": item.price if event_type == "purchase" else None, "user_agent": agent})
                ts += rng.randint(*EVENT_GAP_S)
    events.sort(key=lambda e: (e["ts"], e["user_id"]))
    for i, e in enumerate(events):
        e["event_id"] = f"ev-{i + 1:07d}"
    return events, demo.users * demo.sessions_per_user


def _mess_up(events: list[dict], rng: random.Random) -> int:
    """Pad some ids with spaces and upper-case some event types: still valid, silver normalises them."""
    chosen = rng.sample(range(len(events)), max(1, round(len(events) * MESSY_RATE)))
    for i in chosen:
        if rng.random() < 0.5:
            events[i]["user_id"] = f" {events[i]['user_id']} "
        else:
            events[i]["event_type"] = events[i]["event_type"].upper()
    return len(chosen)


def _event_lines(events: list[dict], catalog: list[DemoItem], demo: DemoConf,
                 rng: random.Random) -> tuple[list[tuple[int, int, str]], dict[str, int]]:
    """(arrival time, order, JSON line) for every clean event and every dirt line, and the dirt counts."""
    next_id = len(events) + 1

    def fresh(e: dict) -> dict:
        nonlocal next_id
        copy = {**e, "event_id": f"ev-{next_id:07d}"}
        next_id += 1
        return copy

    counts = {kind: max(1, round(len(events) * rate)) for kind, rate in DIRT_RATES.items()}
    lines = [(e["ts"], 0, _line(e, rng)) for e in events]
    for kind, n in counts.items():
        for i in rng.sample(range(len(events)), n):
            e = events[i]
            if kind == "duplicate":
                # the very same line again, delivered up to ten minutes later
                lines.append((e["ts"] + rng.randint(0, 600), 1, lines[i][2]))
                continue
            bad = fresh(e)
            if kind == "retry":
                bad["ts"] = e["ts"] + rng.randint(*RETRY_DELAY_S)
            elif kind == "malformed":
                text = _line(bad, rng)
                lines.append((e["ts"], 1, text[: rng.randint(10, len(text) - 2)]))
                continue
            elif kind in ("missing_user_id", "missing_item_id", "missing_event_type", "missing_ts"):
                key = kind.removeprefix("missing_")
                if rng.random() < 0.5:
                    bad.pop(key)
                else:
                    bad[key] = "" if key == "event_type" else None
            elif kind == "unknown_event_type":
                bad["event_type"] = rng.choice(["wishlist", "share", "hover"])
            elif kind == "wrong_type":
                bad["value"] = rng.choice(["12,5 EUR", "abc", "NaN"])
            elif kind == "empty_id":
                bad[rng.choice(["user_id", "item_id"])] = rng.choice(["  ", " \t "])
            elif kind == "id_too_long":
                bad["item_id"] = "i" * 300
            lines.append((e["ts"], 1, _line(bad, rng, raw_ts=_dirty_ts(kind, rng))))
    bot_start = int(datetime.combine(demo.start, datetime.min.time(),
                                     timezone.utc).timestamp()) + 3 * 3600
    for k in range(BOT_EVENTS):
        bot = fresh({"user_id": BOT_USER, "item_id": rng.choice(catalog).item_id, "event_type": "view",
                     "ts": bot_start + k, "value": None, "user_agent": BOT_AGENT})
        lines.append((bot["ts"], 1, _line(bot, rng)))
    counts["bot"] = BOT_EVENTS
    return lines, counts


def _dirty_ts(kind: str, rng: random.Random) -> str | int | None:
    """The raw ts for a dirt kind that lies about time (None: keep the event's own)."""
    if kind == "bad_timestamp":
        return rng.choice(UNREADABLE_TIMES)
    if kind == "too_old":
        return rng.choice(IMPOSSIBLE_OLD)
    if kind == "future":
        return rng.choice(IMPOSSIBLE_FUTURE)
    return None


def _line(e: dict, rng: random.Random, raw_ts: str | int | None = None) -> str:
    """One JSON line; ts in a format drawn at random; value and absent fields omitted or null."""
    record = {"event_id": e["event_id"], "user_id": e.get("user_id"), "item_id": e.get("item_id"),
              "event_type": e.get("event_type"), "ts": None, "user_agent": e["user_agent"]}
    if "ts" in e:
        record["ts"] = raw_ts if raw_ts is not None else (_format_ts(e["ts"], rng) if e["ts"] is not None else None)
    else:
        record.pop("ts")
    for key in ("user_id", "item_id", "event_type"):
        if key not in e:
            record.pop(key)
    if e.get("value") is not None:
        record["value"] = e["value"]
    return json.dumps(record)


def _format_ts(ts: int, rng: random.Random) -> str | int:
    moment = datetime.fromtimestamp(ts, timezone.utc)
    style = rng.randrange(6)
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if style == 2:
        offset = rng.choice(OFFSETS)
        sign = 1 if offset[0] == "+" else -1
        local = moment + sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        return local.strftime("%Y-%m-%dT%H:%M:%S") + offset
    if style == 3:
        return ts
    if style == 4:
        return ts * 1000
    return str(ts)


def _item_lines(catalog: list[DemoItem], rng: random.Random) -> tuple[list[str], dict[str, int]]:
    """The catalog as JSON lines plus its dirt: one malformed line, one item without a title, one without an
    id, and revised copies of a few items appended at the end (the later row wins)."""
    def line(item_id: str | None, title: str | None, description: str | None, categories: list[str]) -> str:
        record = {"item_id": item_id, "title": title, "description": description, "categories": categories}
        return json.dumps({k: v for k, v in record.items() if v is not None})

    lines = [line(i.item_id, i.title, i.description, i.categories) for i in catalog]
    extra = len(catalog) + 1
    lines.insert(rng.randrange(len(lines)), line(f"i{extra:04d}", "The Unfinished Line (noir)", None, ["noir"])[:25])
    lines.insert(rng.randrange(len(lines)), line(f"i{extra + 1:04d}", "", "No title here.", ["noir"]))
    lines.insert(rng.randrange(len(lines)), line(None, "The Nameless Item (noir)", None, ["noir"]))
    revised = rng.sample(catalog, max(1, len(catalog) // 50))
    lines += [line(i.item_id, i.title, f"{i.description or i.title} (revised)", i.categories) for i in revised]
    return lines, {"malformed": 1, "missing_title": 1, "missing_item_id": 1, "duplicates": len(revised)}


def _write_days(folder: Path, lines: list[tuple[int, int, str]]) -> list[str]:
    days: dict[str, list[str]] = {}
    for ts, _, text in sorted(lines, key=lambda x: (x[0], x[1])):
        days.setdefault(datetime.fromtimestamp(ts, timezone.utc).date().isoformat(), []).append(text)
    written = [_write(folder / f"{day}.jsonl", day_lines) for day, day_lines in sorted(days.items())]
    for stale in set(folder.glob("*.jsonl")) - {Path(p) for p in written}:
        stale.unlink()
    return written


def _write(path: Path, lines: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)
