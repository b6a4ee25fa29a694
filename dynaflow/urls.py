"""Database URLs as they may be shown: every password replaced by ``***``.

A password can sit in the user-info part (``postgresql://user:secret@host/db``) or in the query
(``?password=secret``, which libpq and psycopg accept too). Whatever prints a URL, or a message
that may quote one (a driver's error), goes through :func:`hide_passwords` first.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@ : greedy up to the last "@" of the URL, so that a password holding an
# unencoded "@" is hidden whole (hiding a little too much is fine, showing a part is not)
_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)(\S*)(@)")
# password=... in a query string or a libpq connection string ("host=... password=...")
_PARAMETER = re.compile(
    r"(\b(?:ssl)?(?:password|passwd|pwd)\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s&;'\"]+)", re.IGNORECASE
)


def hide_passwords(text: str) -> str:
    """``text`` (a URL, or a message quoting one) with every password shown as ``***``."""
    text = _USERINFO.sub(lambda m: f"{m[1]}{MASK}{m[3]}", text)
    return _PARAMETER.sub(lambda m: f"{m[1]}{MASK}", text)


def display_url(url: str) -> str:
    """``url`` as dynaflow shows it: as SQLAlchemy renders it, with every password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        pass  # not a URL SQLAlchemy reads: hide what looks like a password all the same
    return hide_passwords(url)
