# The OpenImages Challenge 2019 branch: Challenge CSVs -> COCO-style JSON -> Faster R-CNN -> detections
# -> Challenge CSV -> the Challenge metric -> AP1..AP5 -> the OpenImages table.


rule convert_openimages:
    input:
        unpack(get_openimages_split_input),
    output:
        f"{OI_ROOT}/annotations/{{oi_split}}.json",
    log:
        f"logs/{DATASET}/convert_openimages_{{oi_split}}.log",
    conda:
        "../envs/eqlv2.yaml"
    resources:
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_resource("evaluate", "runtime"),
    params:
        images_dir=get_openimages_images_dir,
    shell:
        "eqlv2 convert-openimages --boxes {input.boxes} --image-labels {input.labels}"
        " --classes {input.classes} --images-dir {params.images_dir} --out {output} > {log} 2>&1"


rule train_openimages:
    input:
        unpack(get_openimages_train_input),
    output:
        ckpt="results/{dataset}/openimages/{oi_method}/model_final.pth",
    log:
        "logs/{dataset}/openimages/{oi_method}/train.log",
    conda:
        "../envs/eqlv2.yaml"
    threads: get_resource("train", "threads")
    resources:
        **get_job_resources("train"),
    params:
        doctor=get_doctor("train"),
        launch=get_launch("train"),
        launcher=get_launcher_flag("train"),
        config=get_openimages_model_config,
        work_dir="results/{dataset}/openimages/{oi_method}/train",
        data_root=get_data_root,
        extra=get_train_args,
    shell:
        "{{ {params.doctor}{params.launch} train {params.config} --work-dir {params.work_dir}"
        " --data-root {params.data_root} --out {output.ckpt} {params.launcher} {params.extra}; }}"
        " > {log} 2>&1"


rule predict_openimages:
    input:
        ckpt="results/{dataset}/openimages/{oi_method}/model_final.pth",
        ann=f"{OI_ROOT}/annotations/validation.json",
        images=get_openimages_images("validation"),
    output:
        bbox="results/{dataset}/openimages/{oi_method}/predictions.bbox.json",
    log:
        "logs/{dataset}/openimages/{oi_method}/predict.log",
    conda:
        "../envs/eqlv2.yaml"
    threads: get_resource("predict", "threads")
    resources:
        **get_job_resources("predict"),
    params:
        doctor=get_doctor("predict"),
        launch=get_launch("predict"),
        launcher=get_launcher_flag("predict"),
        config=get_openimages_model_config,
        data_root=get_data_root,
        prefix="results/{dataset}/openimages/{oi_method}/predictions",
    shell:
        "{{ {params.doctor}{params.launch} test {params.config} --checkpoint {input.ckpt}"
        " --data-root {params.data_root} --out-prefix {params.prefix} {params.launcher}; }}"
        " > {log} 2>&1"


rule export_openimages_predictions:
    input:
        results="results/{dataset}/openimages/{oi_method}/predictions.bbox.json",
        ann=f"{OI_ROOT}/annotations/validation.json",
    output:
        "results/{dataset}/openimages/{oi_method}/predictions.csv",
    log:
        "logs/{dataset}/openimages/{oi_method}/export_predictions.log",
    conda:
        "../envs/eqlv2.yaml"
    resources:
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_resource("evaluate", "runtime"),
    shell:
        "eqlv2 convert-predictions --results {input.results} --ann {input.ann}"
        " --out {output} > {log} 2>&1"


rule evaluate_openimages:
    input:
        boxes=get_openimages_file("validation_boxes"),
        labels=get_openimages_file("validation_labels"),
        hierarchy=get_openimages_file("hierarchy"),
        classes=get_openimages_file("classes"),
        predictions="results/{dataset}/openimages/{oi_method}/predictions.csv",
    output:
        "results/{dataset}/openimages/{oi_method}/metrics.csv",
    log:
        "logs/{dataset}/openimages/{oi_method}/evaluate.log",
    conda:
        "../envs/eqlv2.yaml"
    threads: get_resource("evaluate", "threads")
    resources:
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_resource("evaluate", "runtime"),
    shell:
        "eqlv2 evaluate-openimages --boxes {input.boxes} --image-labels {input.labels}"
        " --hierarchy {input.hierarchy} --classes {input.classes}"
        " --predictions {input.predictions} --out {output} > {log} 2>&1"


rule grouped_ap:
    input:
        metrics="results/{dataset}/openimages/{oi_method}/metrics.csv",
        train_ann=f"{OI_ROOT}/annotations/train.json",
    output:
        "results/{dataset}/openimages/{oi_method}/grouped_ap.json",
    log:
        "logs/{dataset}/openimages/{oi_method}/grouped_ap.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        counts=get_grouped_ap_counts,
    shell:
        "eqlv2 grouped-ap --metrics {input.metrics} {params.counts} --out {output} > {log} 2>&1"


rule openimages_table:
    input:
        reports=expand(
            "results/{{dataset}}/openimages/{oi_method}/grouped_ap.json",
            oi_method=OI_METHODS,
        ),
    output:
        md="results/{dataset}/openimages_table.md",
        csv="results/{dataset}/openimages_table.csv",
        html=report(
            "results/{dataset}/openimages_table.html",
            caption="../workflow/report/openimages_table.rst",
            category="Tables",
        ),
    log:
        "logs/{dataset}/openimages_table.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        reports=get_openimages_reports_args,
    shell:
        "eqlv2 openimages-table --dataset {wildcards.dataset} --reports {params.reports}"
        " --md {output.md} --csv {output.csv} --html {output.html} > {log} 2>&1"
