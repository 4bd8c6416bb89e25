"""The core types every layer shares: messages, errors, clock, the upstream contract."""
