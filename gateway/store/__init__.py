"""The store-and-forward buffer: SQLite in WAL mode."""
