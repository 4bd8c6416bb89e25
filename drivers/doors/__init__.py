"""Face/QR door terminals on the community's local MQTT broker.

``terminals.DoorTerminals`` is the component (connection, pseudonymisation, dedup memory, door
and heartbeat timers, unlock commands, counters); ``mapping`` is the pure payload mapping. The
core types (``AccessEvent``, ``DoorTracker``, ``TerminalWatch``) are in ``gateway.core.access``.
"""
