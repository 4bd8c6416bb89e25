"""Operating the gateway: the local API, health, metrics, the monitor, systemd, logging."""
