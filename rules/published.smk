# The original project's published checkpoints: download (sha256 from the config) -> convert to this
# package's models -> the same inference and LVIS evaluation as ours -> a table beside the README's.


localrules:
    published,


rule published:
    input:
        expand("results/{dataset}/published_table.md", dataset=DATASET),


rule import_published:
    input:
        ckpt=get_published_checkpoint,
        ann=get_annotation("val"),
        train_ann=get_annotation("train"),
        images=get_images("val"),
    output:
        ckpt="results/{dataset}/published/{method}/model_final.pth",
    log:
        "logs/{dataset}/published/{method}/import.log",
    conda:
        "../envs/eqlv2.yaml"
    resources:
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_resource("evaluate", "runtime"),
    params:
        config=get_model_config,
        data_root=get_data_root,
    shell:
        "eqlv2 import-checkpoint {input.ckpt} --config {params.config}"
        " --data-root {params.data_root} --out {output.ckpt} > {log} 2>&1"


rule published_table:
    input:
        metrics=expand(
            "results/{{dataset}}/published/{method}/metrics.json", method=PUBLISHED
        ),
    output:
        md="results/{dataset}/published_table.md",
        csv="results/{dataset}/published_table.csv",
        html=report(
            "results/{dataset}/published_table.html",
            caption="../workflow/report/published_table.rst",
            category="Tables",
        ),
    log:
        "logs/{dataset}/published_table.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        metrics=get_published_metrics_args,
    shell:
        "eqlv2 table --dataset {wildcards.dataset} --metrics {params.metrics}"
        " --title 'The original checkpoints on {wildcards.dataset} (percent)'"
        " --md {output.md} --csv {output.csv} --html {output.html} > {log} 2>&1"
