rule paper_table:
    input:
        metrics=expand("results/{{dataset}}/{method}/metrics.json", method=METHODS),
    output:
        md=report(
            "results/{dataset}/paper_table.md",
            caption="../workflow/report/paper_table.rst",
            category="Paper table",
        ),
        csv="results/{dataset}/paper_table.csv",
    log:
        "logs/{dataset}/paper_table.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        metrics=get_metrics_args,
        own=get_own_methods_args,
    shell:
        "eqlv2 table --dataset {wildcards.dataset} --metrics {params.metrics} {params.own}"
        " --md {output.md} --csv {output.csv} > {log} 2>&1"
