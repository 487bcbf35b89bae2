# Per-sample gating: compensation, transforms and the Treg hierarchy (treganalysis gate).


rule gate:
    input:
        fcs=fcs_file,
    output:
        populations="results/samples/{sample}/populations.tsv",
        gates="results/samples/{sample}/gates.json",
    params:
        settings=GATING_SETTINGS,
    log:
        "logs/gate/{sample}.log",
    threads: 1
    resources:
        # float32 events, their compensated copy, transformed gating channels and masks
        mem_mb=lambda wildcards, input: 600 + 8 * int(input.size_mb),
    conda:
        "../envs/treganalysis.yaml"
    shell:
        "treganalysis gate {input.fcs:q} --out results/samples/{wildcards.sample}"
        " --config-json {params.settings:q} > {log} 2>&1"
