"""Device drivers, one package per protocol. Only these import protocol libraries."""
