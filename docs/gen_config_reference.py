"""The configuration reference page, generated from the code: every key of `lakerec.config.Config`.

Where each column comes from:
- key and type: the pydantic models in lib/lakerec/config.py (their constraints, e.g. `ge=1`, included);
- default: conf/base.yaml validated by those models (what a run gets when no profile, file or --set changes it),
  and the value each profile in conf/ sets instead;
- doc: the field's `Field(description=...)`, else the key's trailing `# comment` in conf/base.yaml, else the
  comment of the same field of the same model at another path (input.items.* reuses input.events.*).

`mkdocs build` runs this file through the mkdocs-gen-files plugin, so the page is always the code's (nothing to
commit or regenerate). `python docs/gen_config_reference.py` prints the page; `--undocumented` lists the keys
that have no doc (tests/unit/test_docs.py fails on any).
"""
from __future__ import annotations

import sys
import types
import typing
from datetime import date, datetime
from pathlib import Path

import annotated_types as at
import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PAGE = "reference/config.md"
sys.path.insert(0, str(ROOT / "lib"))  # this checkout's lakerec, not whatever an editable install points at

from lakerec.config import Config  # noqa: E402

INTRO = """\
# Configuration reference

Generated from the pydantic models in `lib/lakerec/config.py` and the comments of `conf/base.yaml` by
`docs/gen_config_reference.py` each time the site is built: it cannot fall behind the code. Change a key's doc
where it lives (its trailing comment in `conf/base.yaml`, or a `Field(description=...)`), not here.

**Where a value comes from**, lowest to highest: the model's default < `conf/base.yaml` < the profile
`conf/<profile>.yaml` (`--profile`, default `local`) < each `--config FILE` in order < the environment < each
`--set key.path=value` in order; the CLI flags `--verbose` and `--log-format`, and a job's own flags such as
`lakerec silver --rebuild`, are `--set` overrides of one key. The environment variables that take part, each
mapped to one key (`LAKEREC_LAKE_ROOT` to `lake.root`, ...), are listed in [Environment variables](environment.md).
The whole result is validated before any work starts: an unknown
key or a wrong type stops the run naming the key.

The **default** column is what `conf/base.yaml` gives (the model's default where base.yaml is silent), then the
value each profile sets instead. Types: *null* means the key may be `null` (YAML) / `None`; a range such as
`≥ 1` is checked.
"""


def _yaml_docs(path: Path) -> dict[str, str]:
    """dotted key -> the trailing comment of its line in a YAML file (plain text: the file's own layout)."""
    docs, stack = {}, []  # stack: (indent, key) of the mappings enclosing the current line
    for line in path.read_text().splitlines():
        body, comment = _split_comment(line)
        stripped = body.strip()
        if not stripped or stripped.startswith("-") or ":" not in stripped:
            continue
        indent = len(body) - len(body.lstrip())
        key = stripped.split(":", 1)[0].strip().strip("'\"")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if comment:
            docs[".".join(k for _, k in stack)] = comment
    return docs


def _split_comment(line: str) -> tuple[str, str]:
    """(text before the comment, the comment) of a YAML line; a # inside quotes is not a comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i], line[i + 1:].strip()
    return line, ""


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in (data or {}).items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _model_of(annotation) -> type[BaseModel] | None:
    """The section model of a field, also of an optional section (`SourceConf | None`: input.items)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _model_of(models[0]) if len(models) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _type(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_type(a) for a in rest) + (", or null" if len(rest) < len(args) else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of ({_type(args[0])})" if typing.get_origin(args[0]) is typing.Literal else f"list of {_type(args[0])}"
    if origin is dict:
        return f"map {_type(args[0])} → {_type(args[1])}"
    if annotation is date:
        return "date (ISO, e.g. 2026-11-01)"
    if annotation is datetime:
        return "date-time (ISO 8601; without an offset: UTC)"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(metadata) -> str:
    signs = {at.Ge: ("≥", "ge"), at.Gt: (">", "gt"), at.Le: ("≤", "le"), at.Lt: ("<", "lt")}
    out = []
    for m in metadata:
        for cls, (sign, attr) in signs.items():
            if isinstance(m, cls):
                out.append(f"{sign} {getattr(m, attr)}")
        if isinstance(m, at.MinLen) and m.min_length:
            out.append("not empty" if m.min_length == 1 else f"at least {m.min_length} entries")
    return ", ".join(out)


def _value(v) -> str:
    if v is None:
        return "`null`"
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, (list, dict)):
        text = yaml.safe_dump(v, default_flow_style=True, width=10_000, sort_keys=False).strip()
        return f"`{text}`"
    text = str(v)
    return f"`{text}`" if text else '`""`'


def _cell(text: str) -> str:
    """Markdown table cell: pipes and angle brackets outside code spans escaped, never a line break."""
    parts = text.replace("\n", " ").split("`")
    return "`".join(_escape(p) if i % 2 == 0 else p for i, p in enumerate(parts))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def keys() -> list[dict]:
    """One row per configuration key, in the models' order: key, section, type, default, profiles, doc."""
    base = yaml.safe_load((CONF / "base.yaml").read_text())
    effective = Config.model_validate({**base, "profile": "local"})
    comments = _yaml_docs(CONF / "base.yaml")
    profiles = {p.stem: _flatten(yaml.safe_load(p.read_text()))
                for p in sorted(CONF.glob("*.yaml")) if p.stem != "base"}
    rows: list[dict] = []

    def walk(model: type[BaseModel], value: BaseModel, prefix: str, section: str):
        for name, field in model.model_fields.items():
            path = f"{prefix}{name}"
            if path == "profile":
                continue  # set from --profile, not a key to write
            sub = _model_of(field.annotation)
            if sub is not None:
                rows.append({"section": path, "model": sub, "doc": field.description or comments.get(path, "")})
                walk(sub, getattr(value, name), f"{path}.", path)
                continue
            kind = _type(field.annotation)
            limits = _constraints(field.metadata)
            rows.append({
                "key": path, "section": section, "model": model, "name": name,
                "type": kind + (f" ({limits})" if limits else ""),
                "default": getattr(value, name),
                "profiles": {p: vals[path] for p, vals in profiles.items() if path in vals},
                "doc": field.description or comments.get(path, ""),
            })

    walk(Config, effective, "", "")
    by_field = {(r["model"], r["name"]): r["doc"] for r in rows if "key" in r and r["doc"]}
    for r in rows:
        if "key" in r and not r["doc"]:
            r["doc"] = by_field.get((r["model"], r["name"]), "")
    return rows


def undocumented() -> list[str]:
    return [r["key"] for r in keys() if "key" in r and not r["doc"]]


def page() -> str:
    out = [INTRO]
    table_open = False
    for r in keys():
        if "key" not in r:
            depth = r["section"].count(".")
            out.append(f"\n{'#' * (2 + min(depth, 2))} `{r['section']}`\n")
            blurb = " ".join(x for x in (r["doc"], " ".join((r["model"].__doc__ or "").split())) if x)
            if blurb:
                out.append(blurb + "\n")
            table_open = False
            continue
        if not table_open:
            out.append("| key | type | default | what it does |\n| --- | --- | --- | --- |")
            table_open = True
        default = _value(r["default"]) + "".join(f"<br>*{p}*: {_value(v)}" for p, v in r["profiles"].items())
        out.append(f"| `{r['key']}` | {_cell(r['type'])} | {default} | {_cell(r['doc'])} |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if "--undocumented" in argv:
        missing = undocumented()
        print("\n".join(missing) or "every key has a doc")
        return 1 if missing else 0
    sys.stdout.write(page())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
elif __name__ == "<run_path>":  # mkdocs-gen-files runs the script with runpy.run_path during the build
    import mkdocs_gen_files

    with mkdocs_gen_files.open(PAGE, "w") as f:
        f.write(page())
