"""Sinks: what takes the store's rows upstream (the platform's MQTT broker, InfluxDB), each
rendering them its own way."""
