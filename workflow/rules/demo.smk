# The built-in demo cohort (samples: demo): a simulated low-dose IL-2 course.
# The samples are simulated by DEMO_PARTS jobs (simulate_demo_1, simulate_demo_2; common.smk),
# every other sample each, so on two cores both halves are simulated at once and gating starts
# after half the time. Each sample has its own random stream, so the files are the bytes of the
# whole cohort simulated at once (`simulate --sample`). A part's start-up is numpy and the package
# (about 0.3 s); a job per sample would pay it 24 times. The tables (samples.tsv, subjects.tsv,
# batches.tsv, truth/classes.tsv, and truth.tsv from each sample's truth/ID.json) are written by
# demo_tables inside Snakemake, which has imported pandas and the package already: a
# `python -m treganalysis simulate --tables` job would spend about 1 s importing pandas.


for _part in range(1, DEMO_PARTS + 1):

    rule:
        name:
            f"simulate_demo_{_part}"
        output:
            fcs=expand("resources/demo/fcs/{sample}.fcs", sample=demo_part(_part)),
            truth=expand("resources/demo/truth/{sample}.json", sample=demo_part(_part)),
        params:
            cohort=" ".join(f"--{k} {shlex.quote(str(v))}" for k, v in DEMO_SETTINGS.items()),
            samples=" ".join(f"--sample {shlex.quote(s)}" for s in demo_part(_part)),
        log:
            f"logs/simulate_demo_{_part}.log",
        conda:
            "../envs/treganalysis.yaml"
        shell:
            "python -m treganalysis simulate --out resources/demo {params.cohort} {params.samples} > {log:q} 2>&1"


localrules:
    demo_tables,


rule demo_tables:
    input:
        expand("resources/demo/truth/{sample}.json", sample=SAMPLES if DEMO else []),
    output:
        sheet="resources/demo/samples.tsv",
        truth="resources/demo/truth.tsv",
    log:
        "logs/demo_tables.log",
    run:
        write_demo_tables(log[0])
