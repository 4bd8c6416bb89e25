"""The composition root: builds every component and runs them in one TaskGroup.

Nothing but the CLI imports this package (``make lint`` checks it: see pyproject.toml)."""
