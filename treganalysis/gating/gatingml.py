"""GatingML 2.0 export of a sample's data-driven gates, through FlowKit.

Other tools (FlowKit, FlowJo via import, Cytobank) can then re-apply exactly the gates this
package chose. Thresholds become range gates on the Logicle-transformed compensated channels,
the singlet band a polygon above the line FSC-H = cut x FSC-A, the lymphocyte gate an ellipsoid,
Tcon a Boolean NOT, and margin events a range gate on the raw channels under everything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._files import write_bytes_atomic

if TYPE_CHECKING:
    from .strategy import GatingResult

__all__ = ["to_gatingml", "IN_RANGE"]

IN_RANGE = "in_range"  # the gate under everything: events below every ceiling
_MATRIX_ID = "treganalysis_compensation"
_FAR = 1e9  # polygon corners far outside any data


def to_gatingml(result: "GatingResult", path: str | os.PathLike) -> Path:
    """Write ``result``'s gates as a GatingML 2.0 document at ``path`` (atomically).

    Parameters
    ----------
    result : GatingResult
        From :func:`treganalysis.gate_sample`.
    path : path
        Destination ``.xml`` file.

    Returns
    -------
    pathlib.Path

    Notes
    -----
    Range gates are half-open (``min <= x < max``) in GatingML where this package keeps
    ``x > t`` above and ``x <= t`` below a threshold: events exactly on a threshold (a measure-zero
    set for continuous data) may fall on the other side.
    """
    import io

    import flowkit as fk

    strategy = fk.GatingStrategy()
    comp = result.provenance.get("compensation") or {}
    comp_ref = "uncompensated"
    if comp.get("applied"):
        # GatingML names each row's fluorochrome too: the $PnS, or the detector where there is none
        names = [result.sample.markers[result.sample.index(c)] or c for c in comp["channels"]]
        strategy.add_comp_matrix(_MATRIX_ID, fk.Matrix(np.array(comp["matrix"]), comp["channels"], names))
        comp_ref = _MATRIX_ID
    transforms = result.provenance.get("transforms") or {}
    for channel, p in transforms.items():
        if p.get("transform") == "logicle":
            strategy.add_transform(_xform_id(channel), fk.transforms.LogicleTransform(p["T"], p["W"], p["M"], p["A"]))

    def dimension(channel: str, low=None, high=None, raw: bool = False):
        fluorescent = channel in transforms and transforms[channel].get("transform") == "logicle"
        return fk.Dimension(channel, compensation_ref="uncompensated" if raw or channel not in comp.get("channels", []) else comp_ref,
                            transformation_ref=_xform_id(channel) if fluorescent and not raw else None,
                            range_min=low, range_max=high)

    sample = result.sample
    margins = result.provenance.get("margins") or {}
    dims = [dimension(c, high=float(sample.ranges[sample.index(c)]) - 1, raw=True) for c in margins]
    paths: dict[str, tuple[str, ...]] = {"root": ("root",)}
    if dims:
        strategy.add_gate(fk.gates.RectangleGate(IN_RANGE, dims), ("root",))
        paths["root"] = ("root", IN_RANGE)
    for record in result.gates:
        name = record.get("population")
        if name is None or record.get("status") == "absent":
            continue
        parent_path = paths[record["parent"]]
        method = record["method"]
        if method == "rule":
            gate_dims = [dimension(cut_channel, low=cut["value"] if cut["side"] == "above" else None,
                                   high=cut["value"] if cut["side"] == "below" else None)
                         for cut_channel, cut in zip(record["channels"], record["cuts"])]
            gate = fk.gates.RectangleGate(name, gate_dims)
        elif method == "singlet_ratio":
            cut = record["cuts"][0]["value"]
            vertices = [(-_FAR, -_FAR * cut), (_FAR, _FAR * cut), (_FAR, 10 * _FAR), (-_FAR, 10 * _FAR)]
            gate = fk.gates.PolygonGate(name, [dimension("FSC-A", raw=True), dimension("FSC-H", raw=True)], vertices)
        elif method == "gmm_ellipse":
            gate = fk.gates.EllipsoidGate(name, [dimension("FSC-A", raw=True), dimension("SSC-A", raw=True)],
                                          record["mean"], record["covariance"], record["distance_square"])
        elif method == "not":
            gate = fk.gates.BooleanGate(name, "not", [{"ref": record["of"], "path": paths[record["of"]][:-1],
                                                         "complement": False}])
        else:
            continue
        strategy.add_gate(gate, parent_path)
        paths[name] = (*parent_path, name)
    buffer = io.BytesIO()
    fk.export_gatingml(strategy, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def _xform_id(channel: str) -> str:
    return f"logicle_{channel}"
