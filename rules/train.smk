rule train:
    input:
        train=get_annotation("train"),
    output:
        ckpt="results/{dataset}/{method}/model_final.pth",
    log:
        "logs/{dataset}/{method}/train.log",
    params:
        config=get_model_config,
        work_dir="results/{dataset}/{method}/train",
        data_root=DATA_ROOT,
        cfg_options=get_cfg_options,
    threads: 2
    conda:
        "../envs/eqlv2.yaml"
    shell:
        "eqlv2 train {params.config} --work-dir {params.work_dir} --data-root {params.data_root}"
        " --out {output.ckpt} {params.cfg_options} > {log} 2>&1"
