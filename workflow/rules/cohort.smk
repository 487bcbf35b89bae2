# The cohort table: every sample x population with subject, timepoint, day and the sheet's columns.
# The statistics join the same table themselves (`stats --results --sheet`, the text the cohort
# job writes, read back), so on two cores they start with the cohort job, not after it: the
# statistics (imports of pandas, scipy.stats and statsmodels, 16 mixed models) are the longest
# step after gating, and the site waits for them. The same job draws the cohort page (`--index`):
# a job of its own after them would import pandas again while the other core waits.


rule cohort:
    input:
        sheet=SHEET,
        tables=expand("results/samples/{sample}/populations.tsv", sample=SAMPLES),
    output:
        table=report("results/cohort/populations.tsv", caption="../report/cohort.rst", category="Cohort"),
        provenance=report("results/cohort/provenance.tsv", caption="../report/provenance.rst", category="Cohort"),
    log:
        "logs/cohort.log",
    # with the statistics before the sample pages: the pages have the most slack
    priority: 1
    conda:
        "../envs/treganalysis.yaml"
    shell:
        "python -m treganalysis cohort --sheet {input.sheet:q} --results results/samples --out {output.table:q}"
        " --provenance {output.provenance:q} > {log:q} 2>&1"



rule stats:
    input:
        sheet=SHEET,
        tables=expand("results/samples/{sample}/populations.tsv", sample=SAMPLES),
        # the cohort page lists each sample's QC
        gates=expand("results/samples/{sample}/gates.json", sample=SAMPLES),
    output:
        longitudinal=report("results/cohort/longitudinal.tsv", caption="../report/longitudinal.rst", category="Cohort"),
        tests=report("results/cohort/tests.tsv", caption="../report/tests.rst", category="Cohort"),
        responders=report("results/cohort/responders.tsv", caption="../report/responders.rst", category="Cohort"),
        # the site's index, drawn here from the tables just written (workflow/rules/report.smk)
        index="results/pages/index.html",
    params:
        settings=STATS_SETTINGS,
        report=REPORT_SETTINGS,
    log:
        "logs/stats.log",
    # the longest job after gating: started first, the cohort table and then the pages beside it
    priority: 1
    threads: 1
    conda:
        "../envs/treganalysis.yaml"
    shell:
        # the mixed models' small matrix products are slower on several BLAS threads, above all
        # when another job holds the other cores
        "OMP_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
        " python -m treganalysis stats --results results/samples --sheet {input.sheet:q} --out results/cohort"
        " --config-json {params.settings:q} --index {output.index:q} --report-json {params.report:q}"
        " > {log:q} 2>&1"
