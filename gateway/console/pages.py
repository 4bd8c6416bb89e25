"""The console's HTML: the sign-in form (rendered here, works without script) and the page
shell that loads ``static/console.js``, which draws every view from the JSON and the stream
(the Reports and Welfare views from ``static/reports.js`` and ``static/welfare.js``, loaded
first).

Contract:
- Every word comes from the catalogue (``gateway.core.catalogue``); every value put into
  HTML is escaped.
- ``STATIC`` holds the page's script and style, read once from the package's ``static``
  folder: nothing is fetched from elsewhere, so the console works with the internet down.
"""

from html import escape
from importlib import resources

from gateway.core.catalogue import Language, phrases

_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("gateway.console") / "static"
    out: dict[str, tuple[bytes, str]] = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in _TYPES:
            out[item.name] = (item.read_bytes(), _TYPES[suffix])
    return out


STATIC = _static()

_HEAD = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="/static/console.css"></head>"""


def login_page(language: Language, site: str, token: str, error: str = "") -> str:
    """The sign-in form; ``token`` is the form's CSRF token (also set as a cookie)."""
    said = phrases(language, "console.")
    title = escape(said["title"].format(site=site))
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return (
        _HEAD.format(lang=language, title=title)
        + f"""
<body class="login"><main><h1>{title}</h1><h2>{escape(said["login.title"])}</h2>{problem}
<form method="post" action="/login">
<input type="hidden" name="token" value="{escape(token)}">
<label>{escape(said["login.name"])}<input name="name" id="name" autocomplete="username"
 autocapitalize="none" required maxlength="64"></label>
<label>{escape(said["login.password"])}<input name="password" id="password" type="password"
 autocomplete="current-password" required maxlength="1024"></label>
<button type="submit" id="signin">{escape(said["login.submit"])}</button>
</form></main></body></html>
"""
    )


def index_page(language: Language) -> str:
    """The page shell; the script fills it."""
    return (
        _HEAD.format(lang=language, title="cgw")
        + """
<body><div id="link" class="link lost" role="status" hidden></div>
<header><span id="site"></span><nav id="nav"></nav><span id="who"></span>
<button type="button" id="lang"></button>
<form id="logout" method="post" action="/logout"><button type="submit" id="signout"></button></form>
</header><button id="sound" class="sound" hidden></button>
<main id="view"></main><script src="/static/reports.js"></script>
<script src="/static/welfare.js"></script><script src="/static/console.js"></script></body></html>
"""
    )
