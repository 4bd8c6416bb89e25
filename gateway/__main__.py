"""``python -m gateway`` is the same as the ``cgw`` console script."""

from gateway.cli.main import main

raise SystemExit(main())
