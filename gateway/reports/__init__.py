"""Proof of service: every device's availability over time, and the reports built from it.

Modules: ``history`` reads and writes the availability tables of the store file (on the store
thread, or read-only for ``cgw report`` while the daemon is stopped); ``availability`` turns a
history into the figures (pure); ``recorder`` takes availability changes and readings from the
pipeline and writes them in batches, with the gateway's heartbeat; ``service`` answers a report
for the running gateway; ``daily`` publishes the previous day's reports upstream once a day.
"""
