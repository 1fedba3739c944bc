rule predict:
    input:
        ckpt="results/{dataset}/{method}/model_final.pth",
        val=get_annotation("val"),
    output:
        bbox="results/{dataset}/{method}/predictions.bbox.json",
        segm="results/{dataset}/{method}/predictions.segm.json",
    log:
        "logs/{dataset}/{method}/predict.log",
    params:
        config=get_model_config,
        data_root=DATA_ROOT,
        prefix="results/{dataset}/{method}/predictions",
    threads: 2
    conda:
        "../envs/eqlv2.yaml"
    shell:
        "eqlv2 test {params.config} --checkpoint {input.ckpt} --data-root {params.data_root}"
        " --out-prefix {params.prefix} > {log} 2>&1"
