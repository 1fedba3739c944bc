rule evaluate_lvis:
    input:
        ann=get_annotation("val"),
        results="results/{dataset}/{method}/predictions.{iou_type}.json",
    output:
        metrics="results/{dataset}/{method}/metrics_{iou_type}.json",
        per_class="results/{dataset}/{method}/per_class_{iou_type}.csv",
    log:
        "logs/{dataset}/{method}/evaluate_{iou_type}.log",
    conda:
        "../envs/eqlv2.yaml"
    threads: get_resource("evaluate", "threads")
    resources:
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_resource("evaluate", "runtime"),
    params:
        max_dets=config["evaluation"]["max_dets"],
        bootstrap=config["evaluation"]["bootstrap"],
        seed=config["evaluation"]["bootstrap_seed"],
    shell:
        "eqlv2 evaluate-lvis --ann {input.ann} --results {input.results}"
        " --iou-type {wildcards.iou_type} --max-dets {params.max_dets}"
        " --bootstrap {params.bootstrap} --seed {params.seed}"
        " --per-class {output.per_class} --out {output.metrics} > {log} 2>&1"


rule collect_metrics:
    input:
        bbox="results/{dataset}/{method}/metrics_bbox.json",
        segm="results/{dataset}/{method}/metrics_segm.json",
    output:
        metrics="results/{dataset}/{method}/metrics.json",
    log:
        "logs/{dataset}/{method}/collect_metrics.log",
    conda:
        "../envs/eqlv2.yaml"
    shell:
        "eqlv2 collect-metrics --bbox {input.bbox} --segm {input.segm}"
        " --out {output.metrics} > {log} 2>&1"
