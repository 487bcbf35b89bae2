# The cohort table: every sample x population with subject, timepoint, day and the sheet's columns.


rule cohort:
    input:
        sheet=SHEET,
        tables=expand("results/samples/{sample}/populations.tsv", sample=SAMPLES),
    output:
        report("results/cohort/populations.tsv", caption="../report/cohort.rst", category="Cohort"),
    log:
        "logs/cohort.log",
    conda:
        "../envs/treganalysis.yaml"
    shell:
        "python -m treganalysis cohort --sheet {input.sheet:q} --results results/samples --out {output:q} > {log:q} 2>&1"

