# The built-in demo cohort (samples: demo): a simulated low-dose IL-2 course.
# The samples are simulated by DEMO_PARTS jobs (simulate_demo_1, simulate_demo_2; common.smk),
# every other sample each, so on two cores both halves are simulated at once and gating starts
# after half the time. Each sample has its own random stream, so the files are the bytes of the
# whole cohort simulated at once (`simulate --sample`). A part needs numpy and the package only
# (start-up about 0.3 s; a job per sample would pay it 24 times). demo_tables then writes the
# tables (samples.tsv, subjects.tsv, batches.tsv, truth/classes.tsv, and truth.tsv from each
# sample's truth/ID.json) in one process, the only one of them that imports pandas (about 0.7 s);
# it runs beside the gate jobs, first when the parts are done, since cohort, stats and the pages
# need the sheet. (A `run:` rule would not save the start-up: Snakemake spawns a process of its
# own for it, about 3 s.)


for _part in range(1, DEMO_PARTS + 1):

    rule:
        name:
            f"simulate_demo_{_part}"
        output:
            fcs=expand("resources/demo/fcs/{sample}.fcs", sample=demo_part(_part)),
            truth=expand("resources/demo/truth/{sample}.json", sample=demo_part(_part)),
        params:
            cohort=DEMO_ARGS,
            samples=" ".join(f"--sample {shlex.quote(s)}" for s in demo_part(_part)),
        log:
            f"logs/simulate_demo_{_part}.log",
        conda:
            "../envs/treganalysis.yaml"
        shell:
            "python -m treganalysis simulate --out resources/demo {params.cohort} {params.samples} > {log:q} 2>&1"


rule demo_tables:
    input:
        expand("resources/demo/truth/{sample}.json", sample=SAMPLES if DEMO else []),
    output:
        sheet="resources/demo/samples.tsv",
        truth="resources/demo/truth.tsv",
    params:
        cohort=DEMO_ARGS,
    log:
        "logs/demo_tables.log",
    priority: 1
    conda:
        "../envs/treganalysis.yaml"
    shell:
        "python -m treganalysis simulate --out resources/demo {params.cohort} --tables sheet --tables truth"
        " > {log:q} 2>&1"
