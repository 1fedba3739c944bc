rule train:
    input:
        unpack(get_train_input),
    output:
        ckpt="results/{dataset}/{method}/model_final.pth",
        # every method's per-class classifier gradients (ClassifierGradientHook), for the report
        gradients="results/{dataset}/{method}/train/classifier_gradients.pt",
    log:
        "logs/{dataset}/{method}/train.log",
    wildcard_constraints:
        method=one_of(RUNS),  # a published checkpoint is imported, not trained
    conda:
        "../envs/eqlv2.yaml"
    threads: get_resource("train", "threads")
    resources:
        **get_job_resources("train"),
    params:
        doctor=get_doctor("train"),
        launch=get_launch("train"),
        launcher=get_launcher_flag("train"),
        config=get_model_config,
        work_dir="results/{dataset}/{method}/train",
        data_root=get_data_root,
        extra=get_train_args,
    shell:
        "{{ {params.doctor}{params.launch} train {params.config} --work-dir {params.work_dir}"
        " --data-root {params.data_root} --out {output.ckpt} {params.launcher} {params.extra}; }}"
        " > {log} 2>&1"


rule surgery:
    input:
        ckpt="results/{dataset}/{method}/model_final.pth",
    output:
        ckpt="results/{dataset}/{method}/surgery/model_reset_{surgery}.pth",
    log:
        "logs/{dataset}/{method}/surgery_{surgery}.log",
    conda:
        "../envs/eqlv2.yaml"
    params:
        out_dir=get_output_dir,
    shell:
        "eqlv2 surgery --ckpt-path {input.ckpt} --method {wildcards.surgery}"
        " --output-dir {params.out_dir} > {log} 2>&1"
