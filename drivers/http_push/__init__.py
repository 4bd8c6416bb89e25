"""Devices that push readings or door events to the gateway by HTTP POST (``http_push``)."""
