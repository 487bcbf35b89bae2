# The HTML site: the cohort page (trajectories, tests, responders) and a page per sample (every gate on
# its data, the thresholds and their methods, acquisition QC, spillover, populations, provenance),
# with one shared plotly.min.js so the pages work offline. Registered for `snakemake --report report.zip`.
# The sample pages need the gating results only, not the statistics: they are drawn by a job of
# their own (into results/pages/, an intermediate folder, with the plotly.min.js they load) while
# cohort and stats run, and the stats job draws the cohort index beside them
# (results/pages/index.html, workflow/rules/cohort.smk). The report job only copies the three into
# the site: it is the one job left after the statistics, with one core idle, so it runs no Python
# (the index drawn in a job of its own cost 0.8-1.3 s there, most of it pandas' import). One job
# draws all the pages: a job's start-up (numpy, pandas, the package: under 1 s) is worth about 20
# pages' drawing (about 0.05 s a page, figures built as plain dicts), so a job per page, or a
# second job, would cost more than it saves (docs/architecture.md).


rule sample_pages:
    input:
        sheet=SHEET,
        results=expand("results/samples/{sample}/{name}", sample=SAMPLES,
                       name=("gates.json", "views.npz", "populations.tsv")),
    output:
        pages=expand("results/pages/samples/{sample}.html", sample=SAMPLES),
        js="results/pages/plotly.min.js",
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
        # not read, but the site is published with the cohort table, and on SLURM the four cohort
        # steps stay one connected group job (workflow/profiles/slurm)
        cohort=rules.cohort.output.table,
        index=rules.stats.output.index,
        js=rules.sample_pages.output.js,
        pages=rules.sample_pages.output.pages,
    output:
        report(directory("results/report"), htmlindex="index.html", caption="../report/qc.rst", category="QC"),
    log:
        "logs/report.log",
    # mkdir and cp need no environment; named as every rule's is (snakemake --lint)
    conda:
        "../envs/treganalysis.yaml"
    shell:
        # the sheet's pages only: a page left in results/pages by an earlier sheet stays out
        "(mkdir -p {output:q}/samples && cp {input.index:q} {input.js:q} {output:q}/"
        " && cp {input.pages:q} {output:q}/samples/) > {log:q} 2>&1"
