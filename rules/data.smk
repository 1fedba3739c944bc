rule make_toy:
    output:
        train=f"{DATA_ROOT}/annotations/lvis_v1_train.json",
        val=f"{DATA_ROOT}/annotations/lvis_v1_val.json",
    log:
        f"logs/{DATASET}/make_toy.log",
    params:
        out_dir=DATA_ROOT,
        toy=get_toy_args,
    conda:
        "../envs/eqlv2.yaml"
    shell:
        "eqlv2 make-toy {params.out_dir} {params.toy} > {log} 2>&1"
