# The report's plots, drawn where Snakemake runs (seconds each); `make report` puts them, the tables and
# the per-class CSV into one page (snakemake --report).


localrules:
    plot_ap_vs_frequency,
    plot_group_ap,
    plot_gradient_ratio,
    plot_loss_curves,
    plot_openimages_groups,


rule plot_ap_vs_frequency:
    input:
        "results/{dataset}/per_class_ap.csv",
    output:
        report(
            "results/{dataset}/plots/ap_vs_frequency.png",
            caption="../workflow/report/ap_vs_frequency.rst",
            category="Plots",
        ),
    log:
        "logs/{dataset}/plots/ap_vs_frequency.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        methods=" ".join(METHODS),
    shell:
        "eqlv2 plot ap-vs-frequency --per-class {input} --methods {params.methods}"
        " --out {output} > {log} 2>&1"


rule plot_group_ap:
    input:
        expand("results/{{dataset}}/{method}/metrics.json", method=RUNS),
    output:
        report(
            "results/{dataset}/plots/group_ap.png",
            caption="../workflow/report/group_ap.rst",
            category="Plots",
        ),
    log:
        "logs/{dataset}/plots/group_ap.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        inputs=lambda wildcards, input: get_per_method_args(input),
    shell:
        "eqlv2 plot group-ap --inputs {params.inputs} --out {output} > {log} 2>&1"


rule plot_gradient_ratio:
    input:
        train_ann=get_annotation("train"),
        gradients=expand(
            "results/{{dataset}}/{method}/train/classifier_gradients.pt",
            method=GRADIENT_RUNS,
        ),
    output:
        report(
            "results/{dataset}/plots/gradient_ratio.png",
            caption="../workflow/report/gradient_ratio.rst",
            category="Plots",
        ),
    log:
        "logs/{dataset}/plots/gradient_ratio.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        inputs=lambda wildcards, input: get_per_method_args(
            input.gradients, GRADIENT_RUNS
        ),
    shell:
        "eqlv2 plot gradient-ratio --inputs {params.inputs} --train-ann {input.train_ann}"
        " --out {output} > {log} 2>&1"


rule plot_loss_curves:
    input:
        expand("results/{{dataset}}/{method}/model_final.pth", method=RUNS),
    output:
        report(
            "results/{dataset}/plots/loss_curves.png",
            caption="../workflow/report/loss_curves.rst",
            category="Plots",
        ),
    log:
        "logs/{dataset}/plots/loss_curves.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        inputs=lambda wildcards: get_per_method_args(
            [f"results/{wildcards.dataset}/{run}/train" for run in RUNS]
        ),
    shell:
        "eqlv2 plot loss-curves --inputs {params.inputs} --out {output} > {log} 2>&1"


rule plot_openimages_groups:
    input:
        expand(
            "results/{{dataset}}/openimages/{oi_method}/grouped_ap.json",
            oi_method=OI_METHODS,
        ),
    output:
        report(
            "results/{dataset}/plots/openimages_groups.png",
            caption="../workflow/report/openimages_groups.rst",
            category="Plots",
        ),
    log:
        "logs/{dataset}/plots/openimages_groups.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        inputs=lambda wildcards, input: " ".join(
            f"{m}={p}" for m, p in zip(OI_METHODS, input)
        ),
    shell:
        "eqlv2 plot openimages-groups --inputs {params.inputs} --out {output} > {log} 2>&1"
