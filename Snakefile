# treganalysis: automated Treg gating and IL-2 trial statistics.
#   snakemake --cores N                                   the demo cohort (config/config.yaml)
#   snakemake --cores N --config samples=path/to/samples.tsv
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/gate.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/report.smk"


onsuccess:
    failed = failed_samples()
    if failed:
        print(f"treganalysis: {len(failed)} sample(s) could not be gated (see results/cohort/populations.tsv):")
        for sample, reason in failed:
            print(f"  {sample}: {reason}")
    release_exit()


onerror:
    release_exit()


rule all:
    default_target: True
    input:
        "results/cohort/populations.tsv",
        rules.stats.output,
        "results/report",
