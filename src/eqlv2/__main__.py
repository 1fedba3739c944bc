"""``python -m eqlv2`` is the ``eqlv2`` command."""

from eqlv2.cli import main

raise SystemExit(main())
