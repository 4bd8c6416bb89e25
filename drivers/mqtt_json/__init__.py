"""Generic MQTT JSON devices (``kind: mqtt_json``) on the community's local broker.

``devices.JsonDevices`` is the component (connection, availability timers, reject counters);
``mapping`` is the pure payload mapping (JMESPath expressions of ``gateway.config.mqtt_json``).
"""
