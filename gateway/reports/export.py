"""The availability report as CSV: the one table ``cgw report availability --csv`` prints and
the field console hands out for download.

Contract: ``as_csv(doc)`` takes the report's document (``gateway.reports.availability``, as the
local API answers it) and gives a header and one row per period and device, then per kind, per
supplier and for all devices, with the figures in ``FIGURES`` order; a missing value is an
empty cell, never 0. Pure: no I/O.
"""

import csv
import io
from typing import Any

FIGURES = ("counted_s", "uptime_pct", "outages", "gateway_outages", "longest_outage_s",
           "downtime_s", "gateway_downtime_s", "readings", "readings_expected",
           "completeness_pct")  # fmt: skip


def as_csv(doc: dict[str, Any]) -> str:
    """A row per period and device, then per kind, supplier and all."""
    out = io.StringIO()
    rows = csv.writer(out, lineterminator="\n")
    rows.writerow(["period", "group", "name", "kind", "supplier", "devices", *FIGURES])
    for p in doc["periods"]:
        lines = [("device", d["device"], d["kind"], d["supplier"], 1, d) for d in p["devices"]]
        lines += [("kind", g["kind"], g["kind"], None, g["devices"], g) for g in p["by_kind"]]
        lines += [
            ("supplier", g["supplier"], None, g["supplier"], g["devices"], g)
            for g in p["by_supplier"]
        ]
        lines.append(("all", None, None, None, p["all"]["devices"], p["all"]))
        for group, name, kind, supplier, devices, figures in lines:
            cells = [p["period"], group, name, kind, supplier, devices]
            cells += [figures[k] for k in FIGURES]
            rows.writerow(["" if c is None else c for c in cells])
    return out.getvalue()
