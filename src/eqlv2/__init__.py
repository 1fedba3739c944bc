"""eqlv2: the Equalization Loss family for long-tailed detection, as an mmdetection 3 plugin.

Importing the package registers its modules in mmdet's registries, so configs reach them with
``custom_imports = dict(imports=['eqlv2'])``.
"""

from eqlv2 import models  # noqa: F401  (registration)

__version__ = "0.1.0"
