"""MQTT devices on the community's local broker: emergency buttons and contacts.

``buttons.MqttButtons`` is the component (connection, dedup memory, reject counters);
``mapping`` is the pure payload mapping, ``dedup`` the bounded, persisted event-id memory.
"""
