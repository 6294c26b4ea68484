"""python -m bench.docs: every measured table of README.md and docs/ is what its results files
give, and a number edited by hand in any rendered table fails the check, naming that table."""
import os
import re

import pytest

from bench import docs
from conftest import REPO, run_app

PAGES = docs.pages()


def placed() -> list[tuple[str, str]]:
    """(page, table name) for every marked table of every page."""
    found = []
    for page in PAGES:
        with open(page) as f:
            found += [(page, m.group(2)) for m in docs.MARKED.finditer(f.read())]
    return found


def edit_one_number(text: str, name: str) -> str:
    """The page with one digit of one row of table `name` changed, as a hand edit would."""
    for m in docs.MARKED.finditer(text):
        if m.group(2) != name:
            continue
        rows = m.group(3).splitlines(keepends=True)
        offset = m.start(3) + len("".join(rows[:2]))  # past the header and the |---| line
        for row in rows[2:]:
            if not row.startswith("|"):
                break
            if digit := re.search(r"\d", row):
                at = offset + digit.start()
                return text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1:]
            offset += len(row)
    raise AssertionError(f"table {name} has no digit in its rows")


def test_the_committed_pages_are_what_the_results_files_give():
    done = run_app("bench.docs", "--check", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 differ" in done.stdout


def test_every_table_is_placed_once_and_every_app_has_its_page():
    names = [name for _, name in placed()]
    assert sorted(names) == sorted(docs.TABLES), "a table is defined but not placed, or twice"
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    pages = re.findall(r"\]\((docs/\w+\.md)\)", readme)
    for app in ("mnist", "classifier", "dqn", "segmenter", "dcgan", "style_transfer",
                "captioner", "detector"):
        assert f"docs/{app}.md" in pages, app
    for page in pages:
        assert os.path.exists(os.path.join(REPO, page)) or page in (
            "docs/serving.md", "docs/scaling.md"), page  # the latter two: other issues' pages


@pytest.mark.parametrize("page, name", placed(), ids=lambda x: os.path.basename(x))
def test_one_number_edited_by_hand_fails_naming_its_table(page, name):
    with open(page) as f:
        text = f.read()
    edited = edit_one_number(text, name)
    assert edited != text
    _, stale = docs.rendered(edited, page)
    assert stale == [name]


def test_the_check_exits_1_naming_the_table_on_a_copy(tmp_path):
    page = os.path.join(REPO, "docs", "mnist.md")
    with open(page) as f:
        text = f.read()
    copy = tmp_path / "mnist.md"
    copy.write_text(edit_one_number(text, "mnist_seeds"))
    done = run_app("bench.docs", "--check", f"--pages={copy}", timeout=120)
    assert done.returncode == 1, done.stdout
    assert "table mnist_seeds differs from its results files" in done.stderr
    assert "mnist_protocol" not in done.stderr
    assert copy.read_text() != text  # --check rewrites nothing
    run_app("bench.docs", f"--pages={copy}", timeout=120)  # rendering puts the file's number back
    assert copy.read_text() == text


def test_an_unknown_table_is_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- table:no_such_table -->\n<!-- /table -->\n")
    done = run_app("bench.docs", "--check", f"--pages={page}", timeout=120)
    assert done.returncode != 0
    assert "no table named 'no_such_table'" in done.stderr


def test_a_table_says_what_its_files_do_not_record_and_repeats_their_warning():
    fcn = docs.render("throughput_fcn")
    assert "From `bench/results/throughput_fcn.json`." in fcn
    assert "Not recorded: date, commit, wall time." in fcn
    assert "do not quote them" in fcn  # the bench flagged the load at its start
    protocol = docs.render("mnist_protocol")
    assert "Not recorded" not in protocol  # a preset_run record holds all a reader needs
