rule train:
    input:
        ann=get_annotation("train"),
    output:
        ckpt="results/{dataset}/{method}/model_final.pth",
    log:
        "logs/{dataset}/{method}/train.log",
    conda:
        "../envs/eqlv2.yaml"
    threads: 2
    params:
        config=get_model_config,
        work_dir="results/{dataset}/{method}/train",
        data_root=get_data_root,
        extra=get_train_args,
    shell:
        "eqlv2 train {params.config} --work-dir {params.work_dir} --data-root {params.data_root}"
        " --out {output.ckpt} {params.extra} > {log} 2>&1"
