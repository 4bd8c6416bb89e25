"""The staff web console: accounts, sessions and the slow-down of failed sign-ins.

``users`` holds the accounts (roles, the users file, argon2id password hashes) and
``sessions`` the signed-in sessions, their CSRF tokens and the ``LoginThrottle``. Both are
plain building blocks without HTTP: the web pages use them, ``cgw users`` edits the file.
docs/console.md, "Accounts and sign-in", states the rules.
"""
