if config["source"] == "toy":

    rule make_toy:
        output:
            train=f"{DATA_ROOT}/annotations/lvis_v1_train.json",
            val=f"{DATA_ROOT}/annotations/lvis_v1_val.json",
            # its OpenImages twin (the images/ links beside them are not tracked)
            openimages=[get_openimages_file(kind) for kind in OI_FILES],
        log:
            f"logs/{DATASET}/make_toy.log",
        conda:
            "../envs/eqlv2.yaml"
        params:
            out_dir=get_toy_dir,
            toy=get_toy_args,
        shell:
            "eqlv2 make-toy {params.out_dir} {params.toy} > {log} 2>&1"


if config["source"] != "toy" or PUBLISHED:

    # Downloads run where Snakemake runs (a login node has internet; compute nodes need none).
    localrules:
        download,

    rule download:
        output:
            "resources/downloads/{name}",
        log:
            "logs/downloads/{name}.log",
        conda:
            "../envs/eqlv2.yaml"
        params:
            source=get_download_source,
        shell:
            "eqlv2 download {wildcards.name} --out {output} {params.source} > {log} 2>&1"


if LVIS_DOWNLOADED:

    rule unpack_lvis_annotations:
        input:
            f"resources/downloads/lvis_{LVIS_VERSION}_{{split}}.json.zip",
        output:
            f"{DATA_ROOT}/annotations/lvis_{LVIS_VERSION}_{{split}}.json",
        log:
            f"logs/{DATASET}/unpack_lvis_{{split}}.log",
        conda:
            "../envs/eqlv2.yaml"
        params:
            dest=get_output_dir,
        shell:
            "eqlv2 unpack {input} --dest {params.dest} > {log} 2>&1"

    rule coco_images:
        input:
            get_coco_archive,
        output:
            directory(f"{DATA_ROOT}/{{split}}2017"),
        log:
            f"logs/{DATASET}/coco_images_{{split}}.log",
        conda:
            "../envs/eqlv2.yaml"
        params:
            command=get_coco_images_command,
        shell:
            "{params.command} > {log} 2>&1"


if config["source"] == "openimages":

    # The images are not downloaded by the workflow (about 500 GB; see the README): an existing copy of
    # OpenImages with train/ and validation/ is linked.
    rule openimages_images:
        output:
            directory(f"{OI_ROOT}/images/{{oi_split}}"),
        log:
            f"logs/{DATASET}/openimages_images_{{oi_split}}.log",
        params:
            source=get_openimages_images_source,
        shell:
            "ln -sfn {params.source} {output} > {log} 2>&1"
