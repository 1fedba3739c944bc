rule predict:
    input:
        ckpt="results/{dataset}/{method}/model_final.pth",
        ann=get_annotation("val"),
    output:
        bbox="results/{dataset}/{method}/predictions.bbox.json",
        segm="results/{dataset}/{method}/predictions.segm.json",
    log:
        "logs/{dataset}/{method}/predict.log",
    conda:
        "../envs/eqlv2.yaml"
    threads: 2
    params:
        config=get_model_config,
        data_root=get_data_root,
        prefix="results/{dataset}/{method}/predictions",
    shell:
        "eqlv2 test {params.config} --checkpoint {input.ckpt} --data-root {params.data_root}"
        " --out-prefix {params.prefix} > {log} 2>&1"
