"""treganalysis: automated regulatory T cell (Treg) gating and IL-2 trial statistics.

The public surface is small; everything else lives in private-by-convention modules::

    import treganalysis as ta
    sample = ta.read_fcs("file.fcs")        # Sample: float32 events, channels, markers, metadata
    comp = ta.compensate(sample)            # spillover from the file's keyword, or a matrix file
    y = ta.logicle(comp.column("FITC-A"))   # GatingML 2.0 Logicle, vectorised
    panel = ta.resolve_panel(sample)        # marker -> channel through configurable aliases
    result = ta.gate_sample(sample)         # the Treg hierarchy: masks, records, population table
"""

from .compensation import compensate, read_spillover_csv
from .errors import FCSError, PanelError, SpilloverError, TransformError, TregAnalysisError
from .fcs import read_fcs
from .gating.strategy import GatingResult, gate_sample
from .panel import DEFAULT_ALIASES, resolve_marker, resolve_panel
from .sample import Sample, Spillover
from .transforms import arcsinh, arcsinh_inverse, estimate_logicle_w, logicle, logicle_inverse

# the package's version (pyproject.toml reads it from here); a literal, because looking it up in
# the installed metadata cost every gating job 50 ms
__version__ = "0.1.0"

__all__ = [
    "read_fcs", "Sample", "Spillover", "compensate", "read_spillover_csv",
    "logicle", "logicle_inverse", "arcsinh", "arcsinh_inverse", "estimate_logicle_w",
    "resolve_panel", "resolve_marker", "DEFAULT_ALIASES", "gate_sample", "GatingResult",
    "TregAnalysisError", "FCSError", "PanelError", "SpilloverError", "TransformError",
    "__version__",
]
