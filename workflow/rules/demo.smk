# The built-in demo cohort (samples: demo): a simulated low-dose IL-2 course.


rule simulate_demo:
    output:
        sheet="resources/demo/samples.tsv",
        fcs=expand("resources/demo/fcs/{sample}.fcs", sample=SAMPLES if DEMO else []),
    params:
        subjects=config["demo"]["subjects"],
        visits=config["demo"]["visits"],
        events=config["demo"]["events"],
        seed=config["demo"]["seed"],
    log:
        "logs/simulate_demo.log",
    conda:
        "../envs/treganalysis.yaml"
    shell:
        "python -m treganalysis simulate --out resources/demo --subjects {params.subjects} --visits {params.visits}"
        " --events {params.events} --seed {params.seed} > {log:q} 2>&1"
