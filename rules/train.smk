rule train:
    input:
        unpack(get_train_input),
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
