rule predict:
    input:
        ckpt="results/{dataset}/{method}/model_final.pth",
        ann=get_annotation("val"),
        images=get_images("val"),
    output:
        bbox="results/{dataset}/{method}/predictions.bbox.json",
        segm="results/{dataset}/{method}/predictions.segm.json",
    log:
        "logs/{dataset}/{method}/predict.log",
    conda:
        "../envs/eqlv2.yaml"
    threads: get_resource("predict", "threads")
    resources:
        **get_job_resources("predict"),
    params:
        doctor=get_doctor("predict"),
        launch=get_launch("predict"),
        launcher=get_launcher_flag("predict"),
        config=get_model_config,
        data_root=get_data_root,
        prefix="results/{dataset}/{method}/predictions",
    shell:
        "{{ {params.doctor}{params.launch} test {params.config} --checkpoint {input.ckpt}"
        " --data-root {params.data_root} --out-prefix {params.prefix} {params.launcher}; }}"
        " > {log} 2>&1"
