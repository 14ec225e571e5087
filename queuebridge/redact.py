"""Keep secrets out of logs, reprs, status output and exceptions."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_text", "redact_url"]

# Userinfo runs to the LAST "@" before the host: a password may itself hold "@" or ";".
_URL_IN_TEXT: Final = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://)([^\s/]*)@")
_SECRET_QUERY: Final = re.compile(
    r"((?:password|passwd|pwd|secret|token|key|ssl_keyfile_password)=)[^&;\s]*", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """Return ``url`` with its password (and secret-looking query values) as ``***``.

    Works for multi-host URLs separated by ``;`` (Kombu alternates) too.
    """
    if ";" in url:
        return ";".join(redact_url(part) for part in url.split(";"))
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" not in netloc and not _SECRET_QUERY.search(parts.query):
        # Nothing to hide; urlunsplit would also drop the "//" of "memory://" or
        # "filesystem:///abs/path" for schemes it does not know.
        return url
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
        else:
            # A lone userinfo component is a password for Redis (redis://secret@host).
            netloc = f"***@{hostinfo}"
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact every URL credential found inside free text (an error message, a log line)."""
    text = _URL_IN_TEXT.sub(lambda m: f"{m.group(1)}***@", text)
    return _SECRET_QUERY.sub(r"\1***", text)
