"""Property tests: every invalid sample-sheet value and config value is answered by a message that
names its row (file line) or key and the form expected."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treganalysis.settings import config_problems
from treganalysis.sheet import SheetError, load_sample_sheet

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

HEADER = ["sample_id", "subject", "timepoint", "day", "fcs", "lymphocytes_per_ul", "role"]

# (column, a bad value, words the message must hold besides the line)
BAD_VALUES = {
    "sample_id": [("", "empty sample_id"), ("a b", "file names"), ("-x", "file names"), ("x/y", "file names"),
                  ("<b>", "file names")],
    "day": [("five", "not a number"), ("5d", "not a number"), ("inf", "not a number")],
    "lymphocytes_per_ul": [("many", "not a number"), ("-3", "negative")],
    "role": [("placebo", "unknown role"), ("Patient!", "unknown role")],
    "fcs": [("", "empty fcs"), ("missing.fcs", "FCS file not found")],
}
KINDS = [(column, value, words) for column, values in BAD_VALUES.items() for value, words in values]


def _sheet(folder: Path, rows: int, bad: tuple[str, str, str] | None, bad_row: int, comments: int) -> int:
    """Write a sheet of ``rows`` samples (one FCS file each) with ``comments`` comment lines on top;
    return the file line of row ``bad_row``."""
    lines = ["# a lab's own notes"] * comments + ["\t".join(HEADER)]
    for i in range(rows):
        (folder / f"s{i}.fcs").write_bytes(b"FCS3.1")
        values = {"sample_id": f"S{i}", "subject": f"P{i // 2}", "timepoint": f"D{i % 2}", "day": str(5 * (i % 2)),
                  "fcs": f"s{i}.fcs", "lymphocytes_per_ul": "1200", "role": "patient"}
        if bad is not None and i == bad_row:
            values[bad[0]] = bad[1]
        lines.append("\t".join(values[c] for c in HEADER))
    (folder / "samples.tsv").write_text("\n".join(lines) + "\n")
    return comments + 2 + bad_row  # header after the comments, rows from the next line


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), rows=st.integers(2, 8), data=st.data(), comments=st.integers(0, 3))
def test_an_invalid_sheet_value_is_named_with_its_line_and_expected_form(tmp_path_factory, kind, rows, data, comments):
    folder = tmp_path_factory.mktemp("sheet")
    bad_row = data.draw(st.integers(0, rows - 1))
    line = _sheet(folder, rows, kind, bad_row, comments)
    with pytest.raises(SheetError) as raised:
        load_sample_sheet(folder / "samples.tsv")
    message = str(raised.value)
    assert str(folder / "samples.tsv") in message
    problem = next(p for p in message.splitlines() if kind[2] in p)
    assert f"line {line}" in problem or f"lines {line}" in problem, (message, line)


def test_a_valid_sheet_loads(tmp_path):
    _sheet(tmp_path, 4, None, 0, 1)
    assert list(load_sample_sheet(tmp_path / "samples.tsv")["sample_id"]) == ["S0", "S1", "S2", "S3"]


# (key path, a bad value, words of the expected form in the message)
BAD_CONFIG = [
    (("samples",), 5, "is not of type 'string'"),
    (("demo", "subjects"), 0, "less than the minimum of 1"),
    (("demo", "events"), "many", "is not of type 'integer'"),
    (("demo", "visits"), "weekly", "is not one of"),
    (("pool_by",), "visit", "is not one of ['none', 'subject', 'batch']"),
    (("qc", "mad"), -1, "less than or equal to the minimum of 0"),
    (("qc", "fail_removed"), 2, "greater than the maximum of 1"),
    (("qc", "tim"), True, "Additional properties are not allowed ('tim' was unexpected)"),
    (("transform", "M"), 0, "less than or equal to the minimum of 0"),
    (("stats", "confidence"), 1.5, "greater than or equal to the maximum of 1"),
    (("stats", "exclude_qc"), ["bad"], "is not one of ['pass', 'warn', 'fail']"),
    (("stats", "responder", "fold_change"), "x", "is not of type 'number'"),
    (("report", "healthy_band"), [4], "is too short"),
    (("compensation", "required"), "yes", "is not of type 'boolean'"),
]


@settings(max_examples=40, deadline=None)
@given(picked=st.lists(st.sampled_from(BAD_CONFIG), min_size=1, max_size=4, unique_by=lambda b: b[0]))
def test_every_invalid_config_value_is_named_by_its_key(picked):
    config = copy.deepcopy(CONFIG)
    for path, value, _ in picked:
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    problems = config_problems(config, SCHEMA)
    assert len(problems) >= len(picked)
    for path, _, words in picked:
        where = ".".join(path[:-1]) if "Additional properties" in words else ".".join(path)
        assert any(p.split(": ")[0].startswith(where) and words in p for p in problems), (where, words, problems)


def test_the_shipped_config_is_valid():
    assert config_problems(CONFIG, SCHEMA) == []
