"""GatingML 2.0 export: FlowKit re-gating the sample with our document agrees with our masks."""

from __future__ import annotations

import warnings

import flowkit as fk
import numpy as np
import pytest

import treganalysis as ta
from treganalysis.simulate import simulate_cohort

from conftest import shared


def _regate(path, result, tmp_path) -> dict[str, float]:
    xml = result.to_gatingml(tmp_path / "gates.xml")
    strategy = fk.parse_gating_xml(str(xml))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = strategy.gate_sample(fk.Sample(str(path), ignore_offset_error=True))
    agreement = {}
    for name in result.masks:
        membership = theirs.get_gate_membership(name)
        assert membership.shape == result.mask(name).shape
        agreement[name] = float(np.mean(membership == result.mask(name)))
    return agreement


@pytest.mark.parametrize("seed", [5, 6])
def test_flowkit_regating_agrees(tmp_path, seed):
    simulate_cohort(tmp_path / "c", subjects=1, events=40_000, seed=seed)
    path = tmp_path / "c" / "fcs" / "P01_D5.fcs"
    result = ta.gate_sample(ta.read_fcs(path))
    agreement = _regate(path, result, tmp_path)
    assert set(agreement) == {"cells", "singlets", "lymphocytes", "live", "cd3", "cd4", "treg", "treg_foxp3_cd127lo",
                              "treg_cd25_cd127lo", "cd25neg_foxp3pos", "tcon"}
    assert min(agreement.values()) >= 0.999, agreement


def test_pooled_gates_export_too(tmp_path):
    simulate_cohort(tmp_path / "c", subjects=1, events=20_000, seed=8)
    paths = [tmp_path / "c" / "fcs" / f"P01_D{d}.fcs" for d in (0, 5)]
    from treganalysis.gating.strategy import gate_group

    for path, result in zip(paths, gate_group([ta.read_fcs(p) for p in paths])):
        assert min(_regate(path, result, tmp_path).values()) >= 0.999


def test_real_file_with_absent_populations(tmp_path):
    path = shared("flowkit", "100715.fcs")
    result = ta.gate_sample(ta.read_fcs(path))
    agreement = _regate(path, result, tmp_path)
    assert "treg" not in agreement and "cd4" in agreement
    assert min(agreement.values()) >= 0.999, agreement


def test_gate_command_writes_gatingml_and_uses_fmo(tmp_path, capsys):
    from treganalysis.cli import main

    simulate_cohort(tmp_path / "c", subjects=1, events=20_000, seed=9, controls=True)
    fcs = tmp_path / "c" / "fcs" / "P01_D0.fcs"
    fmo = tmp_path / "c" / "controls" / "B1_FMO_FOXP3.fcs"
    assert main(["gate", str(fcs), "--fmo", f"FOXP3={fmo}", "--gatingml", "--out", str(tmp_path / "g")]) == 0
    strategy = fk.parse_gating_xml(str(tmp_path / "g" / "gates.xml"))
    assert "treg" in {gate_id for gate_id, _ in strategy.get_gate_ids()}
    assert '"method_used": "fmo"' in (tmp_path / "g" / "gates.json").read_text()
    assert main(["gate", str(fcs), "--fmo", "foxp3", "--out", str(tmp_path / "h")]) == 1
    assert "MARKER=FILE" in capsys.readouterr().err
