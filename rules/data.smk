if config["source"] == "toy":

    rule make_toy:
        output:
            train=f"{DATA_ROOT}/annotations/lvis_v1_train.json",
            val=f"{DATA_ROOT}/annotations/lvis_v1_val.json",
        log:
            f"logs/{DATASET}/make_toy.log",
        conda:
            "../envs/eqlv2.yaml"
        params:
            out_dir=get_toy_dir,
            toy=get_toy_args,
        shell:
            "eqlv2 make-toy {params.out_dir} {params.toy} > {log} 2>&1"
