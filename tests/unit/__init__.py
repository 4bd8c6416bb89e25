"""Unit (pure, no I/O) tests."""
