"""What a data check left out or changed: counts with a few examples, kept in results.json and
told in the data's one-line summary, so a run never drops data silently."""
from __future__ import annotations

EXAMPLES = 3


def problem(names=()) -> dict:
    """{"count", "examples"} for the given names (the first few, sorted)."""
    names = sorted(names)
    return {"count": len(names), "examples": names[:EXAMPLES]}


def note(problems: dict, what: str, example: str) -> None:
    """Counts one more `what`, keeping the first few examples."""
    found = problems[what]
    found["count"] += 1
    if len(found["examples"]) < EXAMPLES:
        found["examples"].append(example)


def described(problems: dict, prefix: str = "") -> list[str]:
    """'<prefix><count> <what> (e.g. a, b)' for every problem that occurred."""
    return [f"{prefix}{found['count']} {what.replace('_', ' ')} (e.g. "
            f"{', '.join(map(str, found['examples']))})"
            for what, found in problems.items() if found["count"]]
