"""The ``cgw`` command line."""
