"""Alarm logic: pure rules that turn readings into conditions, and the alarm lifecycle.

Nothing in this package does I/O, sleeps or reads a clock: time comes in as arguments, so
every rule and transition is tested synchronously over a simulated clock.
"""
