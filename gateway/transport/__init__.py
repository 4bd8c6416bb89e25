"""Protocol glue shared by drivers and sinks (the only part of ``gateway/`` that may import a
protocol library, because both sides of the house use it)."""
