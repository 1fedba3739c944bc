rule paper_table:
    input:
        metrics=expand("results/{{dataset}}/{method}/metrics.json", method=RUNS),
    output:
        md="results/{dataset}/paper_table.md",
        csv="results/{dataset}/paper_table.csv",
        html=report(
            "results/{dataset}/paper_table.html",
            caption="../workflow/report/paper_table.rst",
            category="Tables",
        ),
    log:
        "logs/{dataset}/paper_table.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        metrics=get_metrics_args,
        own=get_own_methods_args,
    shell:
        "eqlv2 table --dataset {wildcards.dataset} --metrics {params.metrics} {params.own}"
        " --md {output.md} --csv {output.csv} --html {output.html} > {log} 2>&1"


rule per_class_ap:
    input:
        train_ann=get_annotation("train"),
        segm=expand("results/{{dataset}}/{method}/per_class_segm.csv", method=RUNS),
        bbox=expand("results/{{dataset}}/{method}/per_class_bbox.csv", method=RUNS),
    output:
        report(
            "results/{dataset}/per_class_ap.csv",
            caption="../workflow/report/per_class_ap.rst",
            category="Per-class results",
        ),
    log:
        "logs/{dataset}/per_class_ap.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        segm=lambda wildcards, input: get_per_method_args(input.segm),
        bbox=lambda wildcards, input: get_per_method_args(input.bbox),
    shell:
        "eqlv2 per-class-table --train-ann {input.train_ann} --segm {params.segm}"
        " --bbox {params.bbox} --out {output} > {log} 2>&1"
