"""The sample sheet: every problem with its file line, comments and odd encodings handled."""

from __future__ import annotations

import pytest

from treganalysis.sheet import SheetError, load_sample_sheet

HEADER = "sample_id\tsubject\ttimepoint\tday\tfcs\n"


def test_comments_blank_lines_bom_crlf_and_hash_in_values(tmp_path):
    (tmp_path / "f#1.fcs").write_bytes(b"x")
    sheet = tmp_path / "s.tsv"
    sheet.write_bytes(("\ufeff" + HEADER + "# visits of one patient\r\n\r\ns1\tP#1\tD0\t-3\tf#1.fcs\r\n").encode("utf-8"))
    table = load_sample_sheet(sheet)
    assert list(table.index) == ["s1"] and table.loc["s1", "subject"] == "P#1" and table.loc["s1", "day"] == -3
    assert table.loc["s1", "fcs"] == str(tmp_path / "f#1.fcs")


def test_problems_carry_their_file_line(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text(HEADER + "# comment\n\nx\tS\tD0\tzero\tmissing.fcs\n")
    with pytest.raises(SheetError) as info:
        load_sample_sheet(sheet)
    message = str(info.value)
    assert "line 4: day 'zero'" in message and "line 4: FCS file not found: missing.fcs" in message


@pytest.mark.parametrize("content", ["", HEADER, "# only a comment\n"])
def test_empty_sheets(tmp_path, content):
    sheet = tmp_path / "s.tsv"
    sheet.write_text(content)
    with pytest.raises(SheetError, match="no samples"):
        load_sample_sheet(sheet)


def test_missing_sheet(tmp_path):
    with pytest.raises(SheetError, match="not found"):
        load_sample_sheet(tmp_path / "nope.tsv")


def test_a_field_past_the_header_and_a_column_named_twice_are_named(tmp_path):
    (tmp_path / "a.fcs").write_bytes(b"x")
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample_id\tsubject\tsubject\ttimepoint\tday\tfcs\n"
                     "s1\tP1\tP1\tD0\t0\ta.fcs\textra\n")
    with pytest.raises(SheetError) as info:
        load_sample_sheet(sheet)
    message = str(info.value)
    assert "line 2: 7 fields where the header (line 1) names 6 columns: 'extra'" in message
    assert "line 1: column 'subject' is named twice in the header (columns 2 and 3)" in message


def test_trailing_tabs_of_a_spreadsheet_export_are_dropped(tmp_path):
    (tmp_path / "a.fcs").write_bytes(b"x")
    sheet = tmp_path / "s.tsv"
    sheet.write_text(HEADER.replace("\n", "\t\n") + "s1\tP1\tD0\t0\ta.fcs\t\t\n" + "s2\tP1\tD5\t5\ta.fcs\n")
    table = load_sample_sheet(sheet)
    assert list(table.columns) == ["sample_id", "subject", "timepoint", "day", "fcs"]
    assert list(table.index) == ["s1", "s2"] and list(table["day"]) == [0, 5]
    sheet.write_text(HEADER.replace("\n", "\t\n") + "s1\tP1\tD0\t0\ta.fcs\tnote\n")
    with pytest.raises(SheetError, match="line 1: column 6 holds values but has no name"):
        load_sample_sheet(sheet)


def test_an_infinite_lymphocyte_count_is_refused(tmp_path):
    (tmp_path / "a.fcs").write_bytes(b"x")
    sheet = tmp_path / "s.tsv"
    sheet.write_text(HEADER.replace("\n", "\tlymphocytes_per_ul\n") + "s1\tP1\tD0\t0\ta.fcs\tinf\n")
    with pytest.raises(SheetError, match="line 2: lymphocytes_per_ul 'inf' is not a number"):
        load_sample_sheet(sheet)


def test_a_comma_separated_sheet_is_named_as_such(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER.replace("\t", ",") + "s1,P1,D0,0,a.fcs\n")
    with pytest.raises(SheetError, match="the sheet is tab-separated, and this header is separated by ','"):
        load_sample_sheet(sheet)


def test_a_line_that_is_not_one_row_is_named(tmp_path):
    """One line per sample: a quoted cell with a line break (a spreadsheet's notes column) is
    named, not read as two broken rows; so is a NUL character."""
    (tmp_path / "a.fcs").write_bytes(b"x")
    sheet = tmp_path / "s.tsv"
    sheet.write_text(HEADER.replace("\n", "\tnote\n") + 's1\tP1\tD0\t0\ta.fcs\t"two\nlines"\n' + "s2\tP\x001\tD0\t0\ta.fcs\t\n")
    with pytest.raises(SheetError) as info:
        load_sample_sheet(sheet)
    message = str(info.value)
    assert "line 2: not one row of tab-separated fields" in message and "a quoted cell must end on its line" in message
    assert "line 4: a NUL character" in message
