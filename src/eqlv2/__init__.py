"""eqlv2: the Equalization Loss family for long-tailed detection, as an mmdetection 3 plugin.

Importing the package is cheap and registers nothing; ``eqlv2.plugin`` registers the modules in mmdet's
registries (configs: ``custom_imports = dict(imports=['eqlv2.plugin'])``).
"""

__version__ = "0.1.0"
