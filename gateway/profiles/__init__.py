"""The profiles the gateway ships, as package data found wherever the package is installed.

Modbus register maps are ``<name>.yaml`` here, door-terminal payload mappings are in ``doors/``
and MQTT button payload mappings in ``mqtt/``. ``SHIPPED`` is this folder: the config loader
searches it after the site's own profile folders. The package is installed as files (a wheel
always is), so the folder is a real path the loader and the simulator can read.
"""

from importlib import resources
from pathlib import Path

SHIPPED = Path(str(resources.files(__name__)))
