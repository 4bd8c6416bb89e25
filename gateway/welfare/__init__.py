"""Welfare checks: households that opted in, watched for signs of life (docs/welfare.md)."""
