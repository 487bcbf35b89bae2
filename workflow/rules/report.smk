# The HTML site: the cohort page (trajectories, tests, responders) and a page per sample (every gate on its data, the thresholds and their methods,
# acquisition QC, spillover, populations, provenance) and the cohort index, with one shared
# plotly.min.js so the pages work offline. Registered for `snakemake --report report.zip`.


rule report:
    input:
        sheet=SHEET,
        cohort="results/cohort/populations.tsv",
        stats=rules.stats.output,
        gates=expand("results/samples/{sample}/gates.json", sample=SAMPLES),
        views=expand("results/samples/{sample}/views.npz", sample=SAMPLES),
    output:
        report(directory("results/report"), htmlindex="index.html", caption="../report/qc.rst", category="QC"),
    params:
        settings=REPORT_SETTINGS,
    log:
        "logs/report.log",
    conda:
        "../envs/treganalysis.yaml"
    shell:
        "python -m treganalysis report --results results/samples --sheet {input.sheet:q} --stats results/cohort"
        " --config-json {params.settings:q} --out {output:q} > {log:q} 2>&1"
