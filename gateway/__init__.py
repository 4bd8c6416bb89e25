"""Edge gateway for smart residential communities.

The core (this package) never imports a protocol library: device protocols live in
``drivers/`` and the network-facing sinks in ``gateway/sinks/``.
"""

__version__ = "0.1.0"
