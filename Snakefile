# eqlv2: the Equalization Loss family and its long-tail baselines, from data to the paper table.
#
# Paths:
#   resources/<dataset>/                           the dataset (generated, downloaded or linked)
#   results/<dataset>/<method>/train/              mmengine work dir: logs, iteration checkpoints
#   results/<dataset>/<method>/model_final.pth     the trained model
#   results/<dataset>/<method>/predictions.{bbox,segm}.json
#   results/<dataset>/<method>/metrics_{bbox,segm}.json, metrics.json
#   results/<dataset>/paper_table.{md,csv}
#   results/<dataset>/openimages/<oi_method>/            the OpenImages branch: model_final.pth,
#       predictions.{bbox.json,csv}, metrics.csv (the Challenge metric file), grouped_ap.json
#   results/<dataset>/openimages_table.{md,csv}
#   results/<dataset>/published/<method>/            the original's checkpoint of a method, imported
#       and evaluated like ours; results/<dataset>/published_table.{md,csv} (target `published`)
#   results/<dataset>/plots/*.png                  the report's plots (`make report`: results/report.html)
#   logs/<dataset>/...                             one log per job, mirroring results/
#   With several `seeds`, each <method>/ above is <method>/seed<k>/ (results and logs).


from snakemake.utils import min_version

min_version("9.27.0")


# Every Python process of every job (torchrun's workers included) has faulthandler on from its first
# import: a crash in native code (a CUDA library, mmcv's operators) leaves its Python stack in the job's
# log, not only the shell's "Segmentation fault".  Snakemake's own prefix (strict bash) is kept.
shell.prefix("set -euo pipefail; export PYTHONFAULTHANDLER=1; ")


# The embedded default, unless the command line names a configuration: merged into the default, the
# LVIS v1 or OpenImages configuration would inherit the toy's rows.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/test.smk"
include: "rules/evaluate.smk"
include: "rules/table.smk"
include: "rules/openimages.smk"
include: "rules/published.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
