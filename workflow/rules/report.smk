# The HTML site: the cohort page (trajectories, tests, responders) and a page per sample (every gate on
# its data, the thresholds and their methods, acquisition QC, spillover, populations, provenance),
# with one shared plotly.min.js so the pages work offline. Registered for `snakemake --report report.zip`.
# The sample pages need the gating results only, not the statistics: they are drawn by a job of
# their own (into results/pages/, an intermediate folder) while cohort and stats run, and the report
# job writes the cohort index and copies the pages into the site. One job draws all the pages:
# a job's start-up (numpy, pandas, the package: under 1 s) is worth about 20 pages' drawing (about
# 0.05 s a page, figures built as plain dicts), so a job per page, or a second job, would cost more
# than it saves (docs/architecture.md).


rule sample_pages:
    input:
        sheet=SHEET,
        results=expand("results/samples/{sample}/{name}", sample=SAMPLES,
                       name=("gates.json", "views.npz", "populations.tsv")),
    output:
        expand("results/pages/samples/{sample}.html", sample=SAMPLES),
    params:
        samples=" ".join(f"--sample {shlex.quote(s)}" for s in SAMPLES),
    log:
        "logs/sample_pages.log",
    conda:
        "../envs/treganalysis.yaml"
    shell:
        "python -m treganalysis report --results results/samples --sheet {input.sheet:q} {params.samples}"
        " --out results/pages > {log:q} 2>&1"


rule report:
    input:
        sheet=SHEET,
        cohort="results/cohort/populations.tsv",
        stats=rules.stats.output,
        gates=expand("results/samples/{sample}/gates.json", sample=SAMPLES),
        populations=expand("results/samples/{sample}/populations.tsv", sample=SAMPLES),
        pages=rules.sample_pages.output,
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
        " --pages results/pages --config-json {params.settings:q} --out {output:q} > {log:q} 2>&1"
