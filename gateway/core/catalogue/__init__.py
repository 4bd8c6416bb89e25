"""The one message catalogue of staff-facing text: notifications and the field console.

Contract:
- ``CATALOGUE[language][key]`` is a phrase with ``str.format`` placeholders; every language
  has every key with the same placeholders (a test keeps them equal), so a phrase missing in
  one language is a test failure, not a blank on a guard's screen.
- Keys: the notification texts (``gateway.core.catalogue.staff``) and the console's, all
  prefixed ``console.`` (``gateway.core.catalogue.console``; its Welfare view's in
  ``gateway.core.catalogue.welfare``).
- ``negotiate(accept_language)`` picks the catalogue language an HTTP ``Accept-Language``
  header prefers (tags parsed by Babel; any Chinese tag picks ``zh-CN``); English when it
  names none of them.
- Pure data and functions; Babel is imported only by ``negotiate``.
"""

from typing import Literal

from gateway.core.catalogue.console import CONSOLE
from gateway.core.catalogue.staff import STAFF
from gateway.core.catalogue.welfare import WELFARE

Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")

CATALOGUE: dict[str, dict[str, str]] = {
    lang: STAFF[lang] | CONSOLE[lang] | WELFARE[lang] for lang in LANGUAGES
}


def negotiate(accept_language: str) -> Language:
    """The catalogue language ``accept_language`` (an HTTP header) prefers; else English."""
    from babel import Locale, UnknownLocaleError

    for part in accept_language.split(","):
        tag = part.split(";")[0].strip()
        if not tag or tag == "*":
            continue
        try:
            locale = Locale.parse(tag, sep="-")
        except (ValueError, UnknownLocaleError):
            continue
        if locale.language == "zh":  # Traditional readers read Simplified better than English
            return "zh-CN"
        if locale.language == "en":
            return "en"
    return "en"


def phrases(language: Language, prefix: str) -> dict[str, str]:
    """The phrases of ``language`` whose keys start with ``prefix``, prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in CATALOGUE[language].items() if k.startswith(prefix)}
