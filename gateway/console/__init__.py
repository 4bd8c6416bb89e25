"""The field console: the guard's duty page, the installer's devices and commissioning, and
the proof-of-service reports.

``server`` is the aiohttp server (sign-in, roles, CSRF, headers), ``routes`` its endpoints
(``reports`` those of the availability and response reports),
``live`` the Server-Sent-Event feed, ``views`` and ``pages`` what it shows, ``ports`` what it
reads of the running gateway; ``users`` holds the accounts (roles, the users file, argon2id
password hashes) and ``sessions`` the signed-in sessions, their CSRF tokens and the
``LoginThrottle``, plain building blocks without HTTP that ``cgw users`` uses too.
docs/console.md states the rules.
"""
