# Configuration and sample sheet: checked before any job runs, every problem listed at once.
import json

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from treganalysis.errors import TregAnalysisError
from treganalysis.sheet import load_sample_sheet
from treganalysis.simulate import cohort_sample_ids


validate(config, "../schemas/config.schema.yaml", set_default=True)

DEMO = config["samples"] == "demo"
if DEMO:
    SHEET = "resources/demo/samples.tsv"
    SAMPLES = cohort_sample_ids(config["demo"]["subjects"], config["demo"]["visits"])
else:
    SHEET = config["samples"]
    try:
        _sheet = load_sample_sheet(SHEET)
    except TregAnalysisError as error:
        raise WorkflowError(str(error)) from None
    validate(_sheet, "../schemas/samples.schema.yaml")
    SAMPLES = list(_sheet.index)
    FCS = dict(zip(_sheet.index, _sheet["fcs"]))

# What treganalysis gate reads from the configuration, passed to each job as one JSON argument.
GATING_SETTINGS = json.dumps({k: config[k] for k in ("panel", "compensation", "transform", "gating")})


def fcs_file(wildcards):
    """The FCS file of a sample: the demo's simulated file, or the sheet's."""
    if DEMO:
        return f"resources/demo/fcs/{wildcards.sample}.fcs"
    return FCS[wildcards.sample]
