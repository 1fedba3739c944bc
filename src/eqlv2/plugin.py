"""The mmdetection plugin: importing this module registers eqlv2's modules in mmdet's registries.

Configs reach them with ``custom_imports = dict(imports=['eqlv2.plugin'])``.  The package itself
(``import eqlv2``) registers nothing and imports neither torch nor mmdet, so that the verbs that need
neither (evaluation, tables, plots, downloads) start in a fraction of a second instead of paying for
torch, mmengine and mmdet in every fresh process.
"""

from eqlv2.compat import import_lvis

# mmdet imports `lvis`, whose import configures the root logger; import it first, undoing that, so that
# a program importing the plugin (Snakemake included) keeps its own logging.
import_lvis()

from eqlv2 import engine, models  # noqa: E402, F401  (registration)
from eqlv2.evaluation import metric  # noqa: E402, F401  (registration: ExactLVISMetric)
