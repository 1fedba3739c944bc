"""eqlv2: the Equalization Loss family for long-tailed detection, as an mmdetection 3 plugin.

Importing the package registers its modules in mmdet's registries, so configs reach them with
``custom_imports = dict(imports=['eqlv2'])``.
"""

from eqlv2.compat import import_lvis

# mmdet imports `lvis`, whose import configures the root logger; import it first, undoing that, so that
# a program importing eqlv2 (Snakemake included) keeps its own logging.
import_lvis()

from eqlv2 import engine, models  # noqa: E402, F401  (registration)
from eqlv2.evaluation import metric  # noqa: E402, F401  (registration: ExactLVISMetric)

__version__ = "0.1.0"
