"""Sequence files -> a raw event drop, so data sets published as `user_id item_id item_id ...` lines (the
S3-Rec/ICLRec Amazon files: items in time order, no timestamps) enter the lake through ingest like any log.

Each line entry becomes one event: event_id `<user>-<position>` (unique, so dedupe keeps every entry, a
repeated item included), synthetic timestamps `start + position * step` (the order is all the file knows;
an hour apart, so no bot-rate or retry rule can see a burst) and one event type. The source config
(conf/sources/toys.yaml) maps the CSV's columns; nothing here knows the lake. The catalog contract needs a
title and the file has none: the items CSV names each item `item <id>` (no text: keep train.text off).

    python -m lakerec.etl.seqfile SRC EVENTS_DIR [--start 2000-01-01T00:00:00Z] [--step-minutes 60]
    -> EVENTS_DIR/events.csv and EVENTS_DIR/../items/items.csv
"""
from __future__ import annotations

import argparse
import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

COLUMNS = ("event_id", "user_id", "item_id", "event_type", "ts")
ITEM_COLUMNS = ("item_id", "title")


def convert(src: str | Path, dst: str | Path, items_dst: str | Path | None = None,
            start: str = "2000-01-01T00:00:00Z", step_minutes: int = 60,
            event_type: str = "purchase") -> dict[str, int]:
    """Write DST (CSV with a header, COLUMNS) from SRC; returns users, interactions (events written) and the
    longest history. A line with a user but no item is an error: it would silently vanish."""
    if step_minutes < 1:
        raise ValueError("step_minutes must be >= 1: equal timestamps would leave the order to chance")
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(timezone.utc)
    step = timedelta(minutes=step_minutes)
    users = events = longest = 0
    seen: dict[str, None] = {}  # items in first-seen order
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{src}:{n}: user {fields[0]!r} has no item")
            user, items = fields[0], fields[1:]
            for pos, item in enumerate(items):
                ts = (t0 + pos * step).strftime("%Y-%m-%dT%H:%M:%SZ")
                writer.writerow((f"{user}-{pos}", user, item, event_type, ts))
            seen.update(dict.fromkeys(items))
            users += 1
            events += len(items)
            longest = max(longest, len(items))
    if items_dst is not None:
        Path(items_dst).parent.mkdir(parents=True, exist_ok=True)
        with open(items_dst, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(ITEM_COLUMNS)
            writer.writerows((item, f"item {item}") for item in seen)
    return {"users": users, "items": len(seen), "interactions": events, "longest": longest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("events_dir", help="folder for events.csv; items/items.csv goes beside it")
    parser.add_argument("--start", default="2000-01-01T00:00:00Z")
    parser.add_argument("--step-minutes", type=int, default=60)
    args = parser.parse_args()
    events_dir = Path(args.events_dir)
    print(convert(args.src, events_dir / "events.csv", events_dir.parent / "items" / "items.csv", args.start,
                  args.step_minutes))


if __name__ == "__main__":
    main()
