"""Panel resolution: marker -> channel through aliases matched against $PnS, then $PnN."""

from __future__ import annotations

import numpy as np
import pytest

from treganalysis import PanelError, Sample, read_fcs
from treganalysis.panel import DEFAULT_ALIASES, merge_aliases, resolve_marker, resolve_panel, tokens

from conftest import DATA, shared


def make(channels: list[str], markers: list[str] | None = None) -> Sample:
    markers = markers if markers is not None else [""] * len(channels)
    assert len(markers) == len(channels)
    return Sample(events=np.zeros((3, len(channels)), np.float32), channels=list(channels), markers=list(markers))


# A realistic Treg panel on a conventional cytometer: detectors in $PnN, "marker fluorochrome" in $PnS.
TREG = [
    ("FSC-A", ""),
    ("FSC-H", ""),
    ("SSC-A", ""),
    ("FL1-A", "CD3 BUV395"),
    ("FL2-A", "CD4 PE-Cy7"),
    ("FL3-A", "CD25 BB515"),
    ("FL4-A", "CD127 BV421"),
    ("FL5-A", "FoxP3 AF647"),
    ("FL6-A", "LIVE DEAD Aqua"),
    ("FL7-A", "CD45RA APC-H7"),
    ("FL8-A", "Ki-67 PE"),
    ("FL9-A", "CD8 BV605"),
    ("FL10-A", "CD56 BV711"),
    ("Time", ""),
]
TREG_EXPECTED = {
    "cd3": "FL1-A",
    "cd4": "FL2-A",
    "cd25": "FL3-A",
    "cd127": "FL4-A",
    "foxp3": "FL5-A",
    "viability": "FL6-A",
    "cd45ra": "FL7-A",
    "ki67": "FL8-A",
    "cd8": "FL9-A",
    "cd56": "FL10-A",
}


@pytest.fixture
def treg() -> Sample:
    return make([c for c, _ in TREG], [m for _, m in TREG])


# -- tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label, expected",
    [
        ("LIVE/DEAD Aqua-A", ["live", "dead", "aqua", "a"]),
        ("FoxP3 AF647", ["foxp3", "af647"]),
        ("145Nd_CD4", ["145nd", "cd4"]),
        ("CD45RA APC-H7", ["cd45ra", "apc", "h7"]),
        ("  Ki-67  (PE) ", ["ki", "67", "pe"]),
        ("", []),
    ],
)
def test_tokens(label, expected):
    assert tokens(label) == expected


# -- a realistic Treg panel -----------------------------------------------------------------------


@pytest.mark.parametrize("marker, channel", sorted(TREG_EXPECTED.items()))
def test_treg_panel_each_marker_resolves_to_its_detector(treg, marker, channel):
    assert resolve_marker(treg, marker) == channel


def test_treg_panel_resolve_panel_all_at_once(treg):
    panel = resolve_panel(treg, list(TREG_EXPECTED), required=list(TREG_EXPECTED))
    assert panel == TREG_EXPECTED


def test_marker_names_are_case_insensitive(treg):
    assert resolve_marker(treg, "FOXP3") == "FL5-A"
    assert resolve_marker(treg, "Ki67") == "FL8-A"
    assert resolve_panel(treg, ["CD25"]) == {"cd25": "FL3-A"}


def test_default_panel_covers_every_marker_of_the_table(treg):
    panel = resolve_panel(treg)
    assert set(panel) == set(DEFAULT_ALIASES)
    for marker, channel in TREG_EXPECTED.items():
        assert panel[marker] == channel
    # absent optional markers are None, not an error
    for marker in ("cd45ro", "cd19", "cd14", "hla-dr", "helios", "ctla4", "cd45"):
        assert panel[marker] is None


def test_cd4_never_matches_cd45ra_or_cd45():
    s = make(["FL1-A", "FL2-A", "FL3-A"], ["CD45RA APC-H7", "CD45 V500", "CD4 PE-Cy7"])
    assert resolve_marker(s, "cd4") == "FL3-A"
    assert resolve_marker(s, "cd45") == "FL2-A"
    assert resolve_marker(s, "cd45ra") == "FL1-A"


def test_cd4_absent_when_only_cd45_channels():
    s = make(["FL1-A", "FL2-A", "FL3-A"], ["CD45RA APC-H7", "CD45 V500", "CD45RO PE"])
    assert resolve_panel(s, ["cd4"]) == {"cd4": None}
    with pytest.raises(PanelError):
        resolve_marker(s, "cd4")


def test_cd3_does_not_match_cd38_or_cd39():
    s = make(["FL1-A", "FL2-A", "FL3-A"], ["CD38 PE", "CD39 BV711", "CD3 FITC"])
    assert resolve_marker(s, "cd3") == "FL3-A"
    assert resolve_marker(s, "cd39") == "FL2-A"


def test_cd8_matches_cd8a_but_cd25_and_cd127_do_not_cross():
    s = make(["FL1-A", "FL2-A", "FL3-A"], ["CD8a FITC", "CD25 PE", "CD127 BV421"])
    assert resolve_panel(s, ["cd8", "cd25", "cd127", "cd4"]) == {
        "cd8": "FL1-A", "cd25": "FL2-A", "cd127": "FL3-A", "cd4": None,
    }


@pytest.mark.parametrize(
    "label",
    [
        "l/d",
        "L/D",
        "L/D Aqua",
        "LIVE DEAD Aqua",
        "LIVE/DEAD Fixable Aqua",
        "Live-Dead NIR",
        "LiveDead",
        "Zombie NIR",
        "Zombie Aqua",
        "7-AAD",
        "7AAD",
        "FVS780",
        "FVS575V",
        "Viability eF780",
        "Fixable Viability Dye eFluor 506",
        "DAPI",
    ],
)
def test_viability_labels(label):
    s = make(["FSC-A", "FL1-A", "FL2-A", "FL3-A", "Time"], ["", "CD4 FITC", label, "CD25 PE", ""])
    assert resolve_marker(s, "viability") == "FL2-A"
    # and the viability channel is not mistaken for anything else
    assert resolve_panel(s, ["cd4", "cd25"]) == {"cd4": "FL1-A", "cd25": "FL3-A"}


def test_cytof_style_labels():
    s = make(
        ["Time", "Event_length", "Nd145Di", "Nd146Di", "Sm149Di", "Gd158Di", "Pt195Di", "Yb176Di"],
        ["", "", "145Nd_CD4", "146Nd_CD8a", "149Sm_CD25", "158Gd_FoxP3", "195Pt_Cisplatin_viability", "176Yb_CD127"],
    )
    assert resolve_panel(s, ["cd4", "cd8", "cd25", "foxp3", "viability", "cd127", "cd3"]) == {
        "cd4": "Nd145Di",
        "cd8": "Nd146Di",
        "cd25": "Sm149Di",
        "foxp3": "Gd158Di",
        "viability": "Pt195Di",
        "cd127": "Yb176Di",
        "cd3": None,
    }


def test_pns_is_preferred_over_pnn():
    # $PnN "CD8-A" (a detector named after a marker by some lab) but $PnS of another channel says CD8
    s = make(["CD8-A", "FL2-A"], ["CD4 FITC", "CD8 PE"])
    assert resolve_marker(s, "cd8") == "FL2-A"
    assert resolve_marker(s, "cd4") == "CD8-A"


def test_falls_back_to_pnn_when_pns_is_empty():
    s = make(["FSC-A", "SSC-A", "CD4-A", "7-AAD-A", "FoxP3-A", "Time"])
    assert resolve_panel(s, ["cd4", "viability", "foxp3", "cd25"]) == {
        "cd4": "CD4-A", "viability": "7-AAD-A", "foxp3": "FoxP3-A", "cd25": None,
    }


def test_pnn_fallback_when_pns_lacks_the_marker():
    s = make(["FL1-A", "7-AAD-A"], ["CD4 FITC", ""])
    assert resolve_marker(s, "viability") == "7-AAD-A"


def test_pnn_fallback_skips_channels_whose_pns_names_another_marker():
    s = make(["FSC-A", "DAPI-A", "FITC-A", "Time"], ["", "CD127 BV421", "CD4 FITC", ""])
    panel = resolve_panel(s, ["viability", "cd127", "cd4"])
    assert panel["cd127"] == "DAPI-A"
    assert panel["viability"] is None  # the only viability-like name is the CD127 channel's detector


def test_area_preferred_over_height_of_same_detector():
    s = make(["FL1-H", "FL1-A", "FL2-A", "FL2-H"], ["CD4 FITC", "CD4 FITC", "CD25 PE", "CD25 PE"])
    assert resolve_marker(s, "cd4") == "FL1-A"
    assert resolve_marker(s, "cd25") == "FL2-A"


def test_dotted_r_style_labels():
    s = make(["FL1-A", "FL2-A"], ["CD4.PE.Cy7", "CD45RA.FITC"])
    assert resolve_marker(s, "cd4") == "FL1-A"


def test_height_preferred_when_detector_has_no_area_channel():
    s = make(["FL1-H", "FL1-W"], ["CD4 FITC", "CD4 FITC"])
    assert resolve_marker(s, "cd4") == "FL1-H"


def test_area_preferred_when_matching_on_pnn():
    s = make(["7-AAD-H", "7-AAD-A", "7-AAD-W"])
    assert resolve_marker(s, "viability") == "7-AAD-A"


def test_area_preference_does_not_hide_two_detectors():
    # -A of two different detectors is a genuine ambiguity
    s = make(["FL1-A", "FL1-H", "FL4-A"], ["CD8 FITC", "CD8 FITC", "CD8 APC"])
    with pytest.raises(PanelError) as err:
        resolve_marker(s, "cd8")
    assert "FL1-A" in str(err.value) and "FL4-A" in str(err.value)


def test_scatter_and_time_channels_never_match():
    s = make(
        ["FSC-A", "SSC-A", "BSC-A", "Time", "HDR-T", "FL1-A"],
        ["CD4 scatter", "Live gate", "CD25", "FoxP3 time", "CD127", "CD3 FITC"],
    )
    assert resolve_panel(s, ["cd4", "viability", "cd25", "foxp3", "cd127", "cd3"]) == {
        "cd4": None, "viability": None, "cd25": None, "foxp3": None, "cd127": None, "cd3": "FL1-A",
    }


def test_scatter_and_time_never_match_an_unknown_marker_by_name():
    s = make(["FSC-A", "SSC-H", "Time"], ["FSC", "SSC", "Time"])
    assert resolve_panel(s, ["fsc", "ssc", "time"]) == {"fsc": None, "ssc": None, "time": None}


# -- errors ---------------------------------------------------------------------------------------


def test_missing_required_marker_lists_every_channel_and_pns():
    s = make(["FSC-A", "FL1-A", "FL2-A", "FL3-A", "Time"], ["", "CD4 FITC", "CD8 PE", "CD3 PerCP", ""])
    with pytest.raises(PanelError) as err:
        resolve_panel(s, ["cd4"], required=["foxp3"])
    msg = str(err.value)
    assert "foxp3" in msg
    for channel in s.channels:
        assert channel in msg
    for label in ("CD4 FITC", "CD8 PE", "CD3 PerCP"):
        assert label in msg
    assert "FL1-A (CD4 FITC)" in msg
    assert "alias" in msg
    assert "\n" not in msg


def test_resolve_marker_missing_raises_with_channels_and_alias_hint(treg):
    with pytest.raises(PanelError) as err:
        resolve_marker(treg, "helios")
    msg = str(err.value)
    assert "helios" in msg and "alias" in msg
    for channel, label in TREG:
        assert channel in msg
        if label:
            assert f"{channel} ({label})" in msg


def test_several_missing_markers_in_one_error():
    s = make(["FL1-A", "FL2-A"], ["CD4 FITC", "CD3 PE"])
    with pytest.raises(PanelError) as err:
        resolve_panel(s, required=["cd4", "cd25", "foxp3", "cd127"])
    msg = str(err.value)
    for marker in ("cd25", "foxp3", "cd127"):
        assert marker in msg
    assert "FL1-A (CD4 FITC)" in msg and "FL2-A (CD3 PE)" in msg


def test_ambiguous_marker_lists_both_channels():
    s = make(["FSC-H", "FL1-H", "FL2-H", "FL4-H"], ["", "CD4 FITC", "CD8 B PE", "CD8 APC"])
    with pytest.raises(PanelError) as err:
        resolve_marker(s, "cd8")
    msg = str(err.value)
    assert "cd8" in msg
    assert "FL2-H" in msg and "CD8 B PE" in msg
    assert "FL4-H" in msg and "CD8 APC" in msg
    # resolve_panel refuses it too, even when cd8 is not required
    with pytest.raises(PanelError):
        resolve_panel(s, ["cd4", "cd8"])


def test_panel_error_is_a_value_error():
    s = make(["FL1-A"], ["CD4"])
    with pytest.raises(ValueError):
        resolve_marker(s, "cd25")


# -- configuration: aliases and explicit channels ---------------------------------------------------


def test_user_aliases_extend_defaults():
    s = make(["FL1-A", "FL2-A", "FL3-A"], ["Scurfin AF647", "CD4 FITC", "IL2RA PE"])
    assert resolve_panel(s, ["foxp3"]) == {"foxp3": None}
    assert resolve_marker(s, "foxp3", aliases={"foxp3": ["scurfin"]}) == "FL1-A"
    # the defaults still work alongside the user's alias
    s2 = make(["FL1-A"], ["FoxP3 PE"])
    assert resolve_marker(s2, "foxp3", aliases={"foxp3": ["scurfin"]}) == "FL1-A"
    # and other markers keep their defaults
    assert resolve_marker(s, "cd25", aliases={"foxp3": ["scurfin"]}) == "FL3-A"


def test_user_alias_as_plain_string_and_upper_case():
    s = make(["FL1-A"], ["Scurfin AF647"])
    assert resolve_marker(s, "foxp3", aliases={"FOXP3": "Scurfin"}) == "FL1-A"


def test_user_alias_for_a_new_marker():
    s = make(["FL1-A", "FL2-A"], ["CD69 FITC", "CD4 PE"])
    assert resolve_marker(s, "activation", aliases={"activation": ["cd69"]}) == "FL1-A"
    assert resolve_panel(s, ["activation", "cd4"], aliases={"activation": ["cd69"]}) == {
        "activation": "FL1-A", "cd4": "FL2-A",
    }


def test_merge_aliases_puts_user_aliases_first_without_changing_defaults():
    before = dict(DEFAULT_ALIASES)
    merged = merge_aliases({"foxp3": ["Scurfin"]})
    assert merged["foxp3"][0] == "scurfin"
    assert set(DEFAULT_ALIASES["foxp3"]) <= set(merged["foxp3"])
    assert DEFAULT_ALIASES == before


def test_explicit_channel_resolves_ambiguity():
    s = make(["FSC-H", "FL1-H", "FL2-H", "FL4-H"], ["", "CD4 FITC", "CD8 B PE", "CD8 APC"])
    assert resolve_marker(s, "cd8", channels={"cd8": "FL4-H"}) == "FL4-H"
    assert resolve_panel(s, ["cd4", "cd8"], channels={"CD8": "FL2-H"}) == {"cd4": "FL1-H", "cd8": "FL2-H"}
    # a marker named only in channels= is resolved too
    assert resolve_panel(s, ["cd4"], channels={"cd8": "FL4-H"}) == {"cd4": "FL1-H", "cd8": "FL4-H"}


def test_explicit_channel_by_pns():
    s = make(["FL2-H", "FL4-H"], ["CD8 B PE", "CD8 APC"])
    assert resolve_marker(s, "cd8", channels={"cd8": "CD8 APC"}) == "FL4-H"


def test_explicit_channel_overrides_aliases():
    s = make(["FL1-A", "FL2-A"], ["CD4 FITC", "odd label"])
    assert resolve_marker(s, "cd4", channels={"cd4": "FL2-A"}) == "FL2-A"


def test_wrong_explicit_channel_raises():
    s = make(["FL1-H", "FL2-H", "FL4-H"], ["CD4 FITC", "CD8 B PE", "CD8 APC"])
    with pytest.raises(PanelError) as err:
        resolve_marker(s, "cd8", channels={"cd8": "FL9-H"})
    msg = str(err.value)
    assert "FL9-H" in msg
    assert "FL2-H (CD8 B PE)" in msg and "FL4-H (CD8 APC)" in msg
    with pytest.raises(PanelError):
        resolve_panel(s, ["cd4"], channels={"cd8": "nope"})


def test_resolve_panel_none_for_absent_optional_and_required_ok(treg):
    panel = resolve_panel(treg, ["cd4", "helios", "ctla4", "cd39"], required=["cd4"])
    assert panel == {"cd4": "FL2-A", "helios": None, "ctla4": None, "cd39": None}


def test_required_markers_are_added_to_the_result(treg):
    panel = resolve_panel(treg, ["cd4"], required=["FOXP3"])
    assert panel == {"cd4": "FL2-A", "foxp3": "FL5-A"}


def test_error_message_names_the_file(tmp_path):
    from treganalysis.fcs import write_fcs

    path = write_fcs(tmp_path / "tube_07.fcs", np.zeros((2, 2), np.float32), ["FL1-A", "FL2-A"], ["CD4 FITC", "CD3 PE"])
    s = read_fcs(path)
    with pytest.raises(PanelError) as err:
        resolve_panel(s, required=["foxp3"])
    assert "tube_07.fcs" in str(err.value)


# -- real files -------------------------------------------------------------------------------------


def test_flowkit_100715():
    s = read_fcs(shared("flowkit", "100715.fcs"))
    panel = resolve_panel(s, ["cd3", "cd4", "cd8", "cd127", "foxp3", "cd25"], required=["cd3", "cd4", "cd8", "cd127"])
    assert panel == {
        "cd3": "R780-A", "cd4": "V655-A", "cd8": "V800-A", "cd127": "G560-A", "foxp3": None, "cd25": None,
    }
    # CD45RO must not be taken for CD4 or CD45RA
    assert resolve_panel(s, ["cd45ra", "cd45ro"]) == {"cd45ra": None, "cd45ro": "R660-A"}


def test_data1_fcs():
    s = read_fcs(DATA / "data1.fcs")
    assert resolve_marker(s, "cd4") == "FL1-H"
    assert resolve_marker(s, "cd3") == "FL3-H"
    with pytest.raises(PanelError) as err:
        resolve_marker(s, "cd8")
    msg = str(err.value)
    assert "FL2-H" in msg and "FL4-H" in msg
    assert "data1.fcs" in msg
    assert resolve_marker(s, "cd8", channels={"cd8": "FL4-H"}) == "FL4-H"


def test_required_alone_looks_only_for_those_markers():
    # an ambiguity among markers nobody asked for must not stop the ones asked for
    s = make(["FL1-H", "FL2-H", "FL4-H"], ["CD4 FITC", "CD8 B PE", "CD8 APC"])
    assert resolve_panel(s, required=["cd4"]) == {"cd4": "FL1-H"}
    with pytest.raises(PanelError, match="several channels"):
        resolve_panel(s)


def test_pnn_fallback_only_on_channels_without_their_own_pns():
    # "DAPI-A" carrying CD62L (a marker the table does not know) is still not a viability channel
    s = make(["DAPI-A", "PI-A", "FITC-A"], ["CD62L BV421", "CD95 PE", "CD4 FITC"])
    assert resolve_panel(s, ["viability", "cd4"]) == {"viability": None, "cd4": "FITC-A"}


def test_more_specific_alias_wins_on_the_same_tokens():
    s = make(["FL1-A", "FL2-A", "FL3-A"], ["CD45-RA FITC", "CD45 PE", "CD45 RO APC"])
    assert resolve_panel(s, ["cd45", "cd45ra", "cd45ro"]) == {"cd45": "FL2-A", "cd45ra": "FL1-A", "cd45ro": "FL3-A"}


def test_a_dump_channel_serves_both_of_its_markers():
    s = make(["V450-A"], ["Vivid / CD14"])
    assert resolve_panel(s, ["viability", "cd14"]) == {"viability": "V450-A", "cd14": "V450-A"}


def test_a_single_marker_string_is_one_marker():
    s = make(["FL1-A"], ["CD4 FITC"])
    assert resolve_panel(s, "cd4") == {"cd4": "FL1-A"}
    assert resolve_panel(s, required="cd4") == {"cd4": "FL1-A"}
