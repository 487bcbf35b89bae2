# Per-sample gating: compensation, transforms and the Treg hierarchy (treganalysis gate), with the
# gates of the sample's group when pool_by is set. A sample that cannot be gated (unreadable FCS,
# missing marker) records why as its population table, so every other sample completes and the
# cohort table lists the failure; the cohort job prints the failed samples.


rule pool:
    input:
        lambda wildcards: [FCS[s] for s in MEMBERS[wildcards.group]],
    output:
        "results/pooled/{group}.json",
    params:
        settings=GATING_SETTINGS,
    log:
        "logs/pool/{group}.log",
    threads: 1
    resources:
        # the group's events pooled: every member's events and their compensated copy
        mem_mb=lambda wildcards, input: 800 + 8 * int(input.size_mb),
        # minutes: about 1 s per million events and channel, generously (size = events x channels x 4 B)
        runtime=lambda wildcards, input: 10 + int(input.size_mb) // 10,
    conda:
        "../envs/treganalysis.yaml"
    shell:
        "OMP_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
        " python -m treganalysis pool {input:q} --group {wildcards.group:q} --out {output:q}"
        " --config-json {params.settings:q} > {log:q} 2>&1"


rule gate:
    input:
        fcs=fcs_file,
        pooled=pooled_gates,
    output:
        populations="results/samples/{sample}/populations.tsv",
        gates="results/samples/{sample}/gates.json",
        views="results/samples/{sample}/views.npz",
    params:
        settings=GATING_SETTINGS,
        # the file's size and modification time: a file replaced by another (even an older copy,
        # which mtime alone would not flag) changes this parameter, and Snakemake gates it again
        stamp=input_stamp,
        pooled=lambda wildcards, input: f"--pooled-gates {shlex.quote(input.pooled[0])}" if input.pooled else "",
    log:
        "logs/gate/{sample}.log",
    # one thread per job: a cohort fills the cores with jobs. With fewer files than cores,
    # `--set-threads gate=2` lets each job run QC beside the transforms, the lymphocyte mixture's
    # starts side by side and the population table beside the views (the same outputs)
    threads: 1
    resources:
        # float32 events, their compensated copy, transformed gating channels and masks
        mem_mb=lambda wildcards, input: 600 + 8 * int(input.size_mb),
        # minutes, from the file's size (events x channels x 4 bytes), generously
        runtime=lambda wildcards, input: 10 + int(input.size_mb) // 10,
    conda:
        "../envs/treganalysis.yaml"
    shell:
        # numerical libraries use no more cores than the job holds
        "OMP_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
        " python -m treganalysis gate {input.fcs:q} --out results/samples/{wildcards.sample} --record-failure"
        " --threads {threads} --config-json {params.settings:q} {params.pooled} > {log:q} 2>&1"
