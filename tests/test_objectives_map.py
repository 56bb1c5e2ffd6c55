"""lectures/README.md maps every learning objective to the lecture section that shows it and the exercise test
cell that grades it. These tests keep the map in step with the notebooks: every objective a lecture's header
lists has exactly one row, every section named is a heading of that lecture, every test cell named is a graded
cell of that exercise, every [ex] objective names one, and the counts at the top are the table's. The statuses
(full / partial) are the map's judgement; no test can decide them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "lectures" / "README.md"
LECTURES = sorted((ROOT / "lectures").glob("0*.ipynb"))
SECTION_SEPARATOR = " + "   # between two headings in the "shown in" column


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def header_objectives(lecture: Path) -> set[str]:
    """The objective ids (`3.4`) in the bullets of the lecture's first cell ("After this notebook you can")."""
    number = int(lecture.name[:2])
    bullets = [line for line in _source(_cells(lecture)[0]).splitlines() if line.startswith("- ")]
    return {m.group(0) for line in bullets for m in re.finditer(rf"(?<![\d.]){number}\.\d(?![\d])", line)}


def headings(lecture: Path) -> set[str]:
    return {line.lstrip("#").strip() for cell in _cells(lecture) if cell["cell_type"] == "markdown"
            for line in _source(cell).splitlines() if line.startswith("#")}


def graded_cells(lecture: Path) -> set[str]:
    solution = ROOT / "solutions" / lecture.stem / lecture.name
    return {cell["metadata"]["nbgrader"]["grade_id"] for cell in _cells(solution)
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade")}


def map_rows() -> dict[str, dict]:
    """Rows of the map's tables by objective id: lecture, objective, shown in, what, shown, graded by, graded."""
    rows, lecture = {}, None
    for line in MAP.read_text().splitlines():
        if m := re.match(r"## (\d\d) .*\(`(.+\.ipynb)`\)", line):
            lecture = ROOT / "lectures" / m.group(2)
            continue
        cols = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cols) == 7 and re.fullmatch(r"\d\.\d", cols[0]):
            assert cols[0] not in rows, f"objective {cols[0]} has two rows in lectures/README.md"
            rows[cols[0]] = dict(zip(("id", "objective", "shown_in", "what", "shown", "graded_by", "graded"), cols),
                                 lecture=lecture)
    return rows


def test_every_lecture_objective_has_one_row_under_its_lecture():
    rows = map_rows()
    assert LECTURES and rows
    listed = set()
    for lecture in LECTURES:
        ids = header_objectives(lecture)
        assert ids, f"{lecture.name}: no objective ids found in the header"
        listed |= ids
        wrong = {i for i in ids if i in rows and rows[i]["lecture"] != lecture}
        assert not wrong, f"{sorted(wrong)} are listed under another lecture than {lecture.name}"
    assert set(rows) == listed, (f"in the map but in no lecture header: {sorted(set(rows) - listed)}; "
                                 f"in a lecture header but not in the map: {sorted(listed - set(rows))}")


def test_sections_named_are_headings_of_the_lecture():
    for oid, row in map_rows().items():
        names = row["shown_in"].split(SECTION_SEPARATOR)
        missing = [n for n in names if n not in headings(row["lecture"])]
        assert not missing, f"{oid}: {missing} is not a heading of {row['lecture'].name}"


def test_graded_objectives_name_existing_test_cells():
    for oid, row in map_rows().items():
        named = set(re.findall(r"`([a-z_0-9]+_tests)`", row["graded_by"]))
        unknown = named - graded_cells(row["lecture"])
        assert not unknown, f"{oid}: {sorted(unknown)} is not a graded cell of solutions/{row['lecture'].stem}"
        if "[ex]" in row["objective"]:
            assert named and row["graded"].split(":")[0] in ("full", "partial"), \
                f"{oid} is an [ex] objective: name its test cell and say full or partial"
            assert row["graded"] == "full" or row["graded"].startswith("partial: "), f"{oid}: say what is not graded"
        else:
            assert row["graded"] == "n/a", f"{oid} is not an [ex] objective: its graded column is n/a"


@pytest.mark.parametrize("column", ["shown", "graded"])
def test_the_counts_at_the_top_are_the_tables(column):
    rows = list(map_rows().values())
    statuses = [r[column].split(":")[0] for r in rows if column == "shown" or "[ex]" in r["objective"]]
    assert all(s in ("full", "partial", "missing", "not graded") for s in statuses), set(statuses)
    assert all(r["shown"] == "full" or r["shown"].startswith(("partial: ", "missing: ")) for r in rows), \
        "a partial or missing objective says what is missing"
    text = MAP.read_text()
    label = "Shown by running code" if column == "shown" else "Graded [ex] objectives"
    m = re.search(rf"\*\*{re.escape(label)}:\*\* (\d+) full, (\d+) partial, (\d+) (missing|not graded) \(of (\d+)\)", text)
    assert m, f"lectures/README.md has no line '**{label}:** N full, N partial, N ... (of N)'"
    full, partial, none, total = int(m[1]), int(m[2]), int(m[3]), int(m[5])
    assert (full, partial, none, total) == (statuses.count("full"), statuses.count("partial"),
                                            len(statuses) - statuses.count("full") - statuses.count("partial"),
                                            len(statuses)), f"the counts of '{label}' are not the table's"
