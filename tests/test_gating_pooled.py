"""Pooled gating: one subject's visits share transforms and thresholds."""

from __future__ import annotations

import numpy as np
import pytest

import treganalysis as ta
from treganalysis.cli import main
from treganalysis.gating.strategy import GatingError, fit_pooled, gate_group
from treganalysis.simulate import simulate_cohort


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    out = tmp_path_factory.mktemp("pooled")
    simulate_cohort(out, subjects=1, events=30_000, seed=11,
                    config={"il2": {"low_responder_share": 0.0, "fold_change_sigma": 0.0}})
    return out, [ta.read_fcs(out / "fcs" / f"P01_D{d}.fcs") for d in (0, 5, 12, 33)]


def _cuts(result) -> dict[str, float]:
    return {r["threshold"]: r["value"] for r in result.gates if "threshold" in r and "on" in r}


def test_visits_share_thresholds_and_transforms(visits):
    _, samples = visits
    results = gate_group(samples, group="P01")
    cuts = [_cuts(r) for r in results]
    assert cuts[0] and all(c == cuts[0] for c in cuts)
    assert all(r.provenance["transforms"] == results[0].provenance["transforms"] for r in results)
    assert all(r.provenance["pooled"] == {"group": "P01", "samples": [s.name for s in samples]} for r in results)
    assert all(rec["on"] == "pooled" for r in results for rec in r.gates if "threshold" in rec and "on" in rec)
    # the expansion under IL-2 is still seen with the pooled gate
    pct = [r.populations.set_index("population").loc["treg", "pct_cd4"] for r in results]
    assert pct[1] > 1.5 * pct[0]


def test_own_gates_differ_from_pooled(visits):
    _, samples = visits
    own = [_cuts(ta.gate_sample(s)) for s in samples]
    assert any(o != own[0] for o in own[1:])  # per-visit thresholds move; pooled ones do not


def test_pooled_cd25_gate_does_not_follow_il2(visits):
    # IL-2 raises CD25 on Tregs at D5: a per-visit CD25 cut may move, the pooled one cannot
    _, samples = visits
    pooled = fit_pooled(samples, group="P01")
    assert pooled.fitted["cd25"].value == _cuts(ta.gate_sample(samples[1], pooled=pooled))["cd25"]


def test_mismatched_panels_refused(visits, tmp_path):
    _, samples = visits
    other = ta.fcs.write_fcs(tmp_path / "x.fcs", np.ones((50, 2)), ["FSC-A", "SSC-A"])
    with pytest.raises(GatingError, match="channels differ"):
        fit_pooled([samples[0], ta.read_fcs(other)])
    with pytest.raises(GatingError, match="at least one"):
        fit_pooled([])


def test_gate_command_pooled(visits, tmp_path, capsys):
    out, _ = visits
    files = [str(out / "fcs" / f"P01_D{d}.fcs") for d in (0, 5)]
    assert main(["gate", *files, "--pooled", "P01", "--out", str(tmp_path / "g")]) == 0
    for d in (0, 5):
        folder = tmp_path / "g" / f"P01_D{d}"
        assert (folder / "populations.tsv").is_file() and '"group": "P01"' in (folder / "gates.json").read_text()
    assert "Treg" in capsys.readouterr().out
