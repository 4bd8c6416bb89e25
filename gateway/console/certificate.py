"""When the console's HTTPS certificate runs out, so that nobody learns it from a guard.

Contract: ``not_after(path)`` reads the first certificate of a PEM chain and returns the end of
its validity as a UNIX time. ``cryptography`` is imported here only, when the console serves
HTTPS. Health turns the figure into a warning 30 days before the end (``gateway.ops.health``):
browsers refuse an expired certificate, and the guards' phones with it.
"""

from pathlib import Path


def not_after(path: Path) -> float:
    """The end of the validity of the first certificate in the PEM file ``path``."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.not_valid_after_utc.timestamp()
