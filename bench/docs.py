r"""Renders every measured table of README.md and docs/*.md from its results files.

    python -m bench.docs              # rewrites each table between its markers
    python -m bench.docs --check      # rewrites nothing; exit 1 naming each table that differs

A page marks where a table goes; everything between the two markers is rendered:

    <!-- table:mnist_protocol -->
    | recipe | ... |
    ...
    From `bench/results/protocol/mnist_book/record.json`. Not recorded: ...
    <!-- /table -->

TABLES maps each name to a small function that reads its files under bench/results/ and
returns a Table: a header, rows of text, notes, and the files it read. Under every table the
renderer names those files, says what a reader needs that they do not record (the command,
the machine, the load at the start and the end, the date, the commit, the wall time), and
repeats any warning a bench wrote into them (a busy machine). A number the files do not hold
has no place in a table. No TensorFlow or PyTorch: the files are JSON and CSV.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import glob
import json
import os
import re
import statistics
import sys

from absl import flags

from bench import REPO, RESULTS, cli

MARKED = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.S)


@dataclasses.dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    sources: list[str]  # paths under bench/results/
    notes: list[str] = dataclasses.field(default_factory=list)


TABLES = {}


def table(name):
    def register(function):
        TABLES[name] = function
        return function
    return register


# ---------------------------------------------------------------- reading and formatting

def load(path: str):
    with open(os.path.join(RESULTS, path)) as f:
        return json.load(f)


def rows_of(path: str) -> list[dict]:
    with open(os.path.join(RESULTS, path), newline="") as f:
        return list(csv.DictReader(f))


def pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%"


def num(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def times(x: float) -> str:
    return f"{x:.2f}x"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def mean_std(values: list[float], scale: float = 100, digits: int = 2) -> str:
    """'99.41 ± 0.08': the mean and the sample standard deviation (n - 1), times `scale`."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * spread:.{digits}f}"


def machine_text(m: dict) -> str:
    """'AMD EPYC (family 25, model 17), 2 cores, AVX-512 + BF16, oneDNN on'."""
    isa = m.get("isa") or []
    kind = ("AVX-512 + BF16" if "avx512_bf16" in isa else "AVX-512" if "avx512f" in isa
            else "AVX2" if "avx2" in isa else "ISA not recorded")
    caps = [f"{k}={m[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if m.get(k)]
    if caps:
        kind += f" capped to AVX2 ({' '.join(caps)})"
    onednn = m.get("onednn")
    if onednn is None and m.get("TF_ENABLE_ONEDNN_OPTS") == "1":
        onednn = True
    state = {True: "oneDNN on", False: "oneDNN off", None: "oneDNN not recorded"}[onednn]
    return f"{m['cpu']}, {m['cores']} cores, {kind}, {state}"


def load_text(start, end) -> str:
    return f"load {start} at the start, {end if end is not None else 'not recorded'} at the end"


def command(text: str) -> str:
    """A recorded command as it runs today: the benches were scripts, run by their path
    (bench/x.py), before they became a package (`python -m bench.x`), with the same flags."""
    return re.sub(r"python\s+bench/(\w+)\.py", r"python -m bench.\1", text)


def date_of(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y-%m-%d")


# ---------------------------------------------------------------- what a file records

def _keys(value, found: set) -> set:
    if isinstance(value, dict):
        for key, inner in value.items():
            if inner is not None:
                found.add(key)
            _keys(inner, found)
    elif isinstance(value, list):
        for inner in value[:50]:
            _keys(inner, found)
    return found


FIELDS = {  # what a reader needs -> the keys that record it, in any file of the suite
    "command": {"command"},
    "machine": {"cpu"},
    "load at the start": {"load_1min", "load_average_1min_at_start", "load_avg_before"},
    "load at the end": {"load_1min_at_end", "load_average_1min_at_end", "load_avg_after"},
    "date": {"date", "start_unix"},
    "commit": {"commit"},
    "wall time": {"wall_seconds", "seconds", "command_seconds", "wall_s"},
}


def expand(source: str) -> list[str]:
    """A source is a path under bench/results/ or a glob pattern of several."""
    found = sorted(glob.glob(os.path.join(RESULTS, source)))
    if not found:
        raise FileNotFoundError(f"bench/results/{source}")
    return [os.path.relpath(f, RESULTS) for f in found]


def missing(source: str) -> list[str]:
    """What a reader needs that the file (any of the files of a pattern) does not record."""
    lacking = set()
    for path in expand(source):
        if path.endswith(".json"):
            found = _keys(load(path), set())
            lacking |= {what for what, keys in FIELDS.items() if not keys & found}
    return [what for what in FIELDS if what in lacking]


def warnings(source: str) -> list[str]:
    said = []
    for path in expand(source):
        data = load(path) if path.endswith(".json") else None
        if isinstance(data, dict) and data.get("warning") and data["warning"] not in said:
            said.append(data["warning"])
    return said


def provenance(sources: list[str]) -> list[str]:
    """The lines under a table: its files, what they do not record, their warnings."""
    lines = ["From " + ", ".join(f"`bench/results/{s}`" for s in sources) + "."]
    gaps = {}
    for source in sources:
        if lacks := missing(source):
            gaps.setdefault(tuple(lacks), []).append(source)
    for lacks, where in gaps.items():
        which = "" if len(where) == len(sources) else " (" + ", ".join(
            f"`{w}`" for w in where) + ")"
        lines.append(f"Not recorded{which}: {', '.join(lacks)}.")
    for source in sources:
        lines += [f"The bench warned (`{source}`): {w}" for w in warnings(source)]
    return lines


def render(name: str) -> str:
    t = TABLES[name]()
    lines = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(row) + " |" for row in t.rows]
    lines += ["", *t.notes, *provenance(t.sources)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- held-out protocol records

def protocol_rows(name: str, label: str, metric: str = "test_accuracy") -> list[list[str]]:
    """One row per seed of bench/results/protocol/<name>/record.json (python -m
    bench.preset_run), and their mean and standard deviation when there are several."""
    record = load(f"protocol/{name}/record.json")
    rows = []
    for run in record["runs"]:
        res, m = run["results"], run["machine"]
        chosen = res.get("selection") or {}
        rows.append([label, str(run["seed"]),
                     f"{chosen.get('epoch', '-')} of {res.get('epochs', '-')} "
                     f"({pct(chosen['value'])})" if "value" in chosen else "-",
                     f"**{pct(res[metric])}**", minutes(run["wall_seconds"]),
                     f"{m['load_1min']} / {run.get('load_1min_at_end', '-')}",
                     run["date"][:10], f"`{run['commit']}`"])
    if len(record["runs"]) > 1:
        values = [r["results"][metric] for r in record["runs"]]
        rows.append([label, "mean ± std", "", f"{mean_std(values)}%", "", "", "", ""])
    return rows


PROTOCOL_HEADER = ["recipe", "seed", "epoch the validation images chose (their accuracy)",
                   "test accuracy", "wall time", "load start / end", "date", "commit"]


def protocol_notes(names: list[str]) -> list[str]:
    notes = []
    for name in names:
        run = load(f"protocol/{name}/record.json")["runs"][0]
        notes.append(f"`{name}`: `python {run['command']}` on {machine_text(run['machine'])}.")
    return notes


# ---------------------------------------------------------------- MNIST (docs/mnist.md)

@table("mnist_protocol")
def mnist_protocol() -> Table:
    names = ["mnist_book", "mnist_fast"]
    rows = (protocol_rows("mnist_book", "book recipe, 20 epochs (`mnist.flags`)")
            + protocol_rows("mnist_fast", "time to accuracy (`mnist_fast.flags`, bfloat16)"))
    return Table(PROTOCOL_HEADER, rows, [f"protocol/{n}/record.json" for n in names],
                 protocol_notes(names))


@table("mnist_seeds")
def mnist_seeds() -> Table:
    recipes = [("mnist", "book recipe, 20 epochs, the book's dropout", "mnist_summary.json"),
               ("mnist_inverted_dropout", "same, Keras's inverted dropout (`--dropout=inverted`)",
                None),
               ("mnist_augment", "augmentation + cosine decay, 40 epochs (`mnist_augment.flags`,"
                " inverted dropout, augmentation on the host)", "mnist_augment_summary.json")]
    rows, sources = [], []
    for prefix, label, summary in recipes:
        runs = [load(f) for f in expand(f"mnist_accuracy/{prefix}-seed*.json")]
        accuracies = [r["test_accuracy"] for r in runs]
        ensemble = "-"
        if summary:
            ensemble = pct(load(f"mnist_accuracy/{summary}")[prefix]["ensemble_accuracy"])
            sources.append(f"mnist_accuracy/{summary}")
        rows.append([label, ", ".join(str(r["seed"]) for r in runs),
                     ", ".join(f"{100 * a:.2f}" for a in accuracies),
                     f"**{mean_std(accuracies)}**", ensemble, runs[0]["backend"]])
        sources.append(f"mnist_accuracy/{prefix}-seed*.json")
    return Table(["recipe", "seeds", "test accuracy per seed (%)", "mean ± std (%)",
                  "ensemble of the seeds", "Keras backend"], rows, sources,
                 ["± is the sample standard deviation over seeds. The files give each run's "
                  "`train_seconds` (training alone) but no device."])


# ---------------------------------------------------------------- the command

def pages(paths: list[str] | None = None) -> list[str]:
    if paths:
        return paths
    return [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def rendered(text: str, page: str) -> tuple[str, list[str]]:
    """The page with every table rendered, and the names of those that differed."""
    stale = []

    def one(match):
        head, name, body, tail = match.groups()
        if name not in TABLES:
            raise SystemExit(f"{page}: no table named {name!r} (bench/docs.py, TABLES)")
        new = render(name)
        if new != body:
            stale.append(name)
        return head + new + tail

    return MARKED.sub(one, text), stale


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool("check", False, "rewrite nothing; exit 1 naming every table that differs "
                      "from its results files", flag_values=fv)
    flags.DEFINE_list("pages", None, "the pages to render (default: README.md and docs/*.md)",
                      flag_values=fv)


def main(args) -> int:
    differ, placed = [], set()
    for page in pages(args.pages):
        with open(page) as f:
            text = f.read()
        placed |= {m.group(2) for m in MARKED.finditer(text)}
        new, stale = rendered(text, page)
        where = os.path.relpath(page, REPO)
        differ += [f"{where}: table {name}" for name in stale]
        if stale and not args.check:
            with open(page, "w") as f:
                f.write(new)
    if args.check and differ:
        for line in differ:
            print(f"{line} differs from its results files", file=sys.stderr)
        print("run python -m bench.docs to render them", file=sys.stderr)
        return 1
    verb = "differ" if args.check else "rendered"
    print(f"{len(placed)} tables checked; {len(differ)} {verb}" + "".join(
        f"\n  {line}" for line in differ))
    return 0


if __name__ == "__main__":
    cli.run(main, define_flags)
