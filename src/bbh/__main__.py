"""``python -m bbh``: the ``bbh`` command line."""

from bbh.cli import main

raise SystemExit(main())
