# The cohort table: every sample x population with subject, timepoint, day and the sheet's columns.


rule cohort:
    input:
        sheet=SHEET,
        tables=expand("results/samples/{sample}/populations.tsv", sample=SAMPLES),
    output:
        table=report("results/cohort/populations.tsv", caption="../report/cohort.rst", category="Cohort"),
        provenance=report("results/cohort/provenance.tsv", caption="../report/provenance.rst", category="Cohort"),
    log:
        "logs/cohort.log",
    conda:
        "../envs/treganalysis.yaml"
    shell:
        "python -m treganalysis cohort --sheet {input.sheet:q} --results results/samples --out {output.table:q}"
        " --provenance {output.provenance:q} > {log:q} 2>&1"



rule stats:
    input:
        "results/cohort/populations.tsv",
    output:
        longitudinal=report("results/cohort/longitudinal.tsv", caption="../report/longitudinal.rst", category="Cohort"),
        tests=report("results/cohort/tests.tsv", caption="../report/tests.rst", category="Cohort"),
        responders=report("results/cohort/responders.tsv", caption="../report/responders.rst", category="Cohort"),
    params:
        settings=STATS_SETTINGS,
    log:
        "logs/stats.log",
    threads: 1
    conda:
        "../envs/treganalysis.yaml"
    shell:
        # the mixed models' small matrix products are slower on several BLAS threads, above all
        # when another job holds the other cores
        "OMP_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
        " python -m treganalysis stats --cohort {input:q} --out results/cohort --config-json {params.settings:q}"
        " > {log:q} 2>&1"
