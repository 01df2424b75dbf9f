"""URLs as docflow shows them (messages, logs, artifacts, exceptions): the password of the user-info and the values
of password-like query parameters replaced by `***`, the rest as written. Pure text work, so that every layer
(settings, storage, tasks, the CLI) can show a URL without leaking the secret in it; it never raises, whatever
the text."""

from __future__ import annotations

import re

MASK = "***"
# Query parameters whose value is a secret (compared lower-case, `-` read as `_`): exact names, then parts of names
# (sslpassword, client_secret, access_token, x_amz_signature, ...).
_SECRET_NAMES = frozenset({"pass", "pwd", "passwd", "key", "sig", "auth", "apikey"})
_SECRET_PARTS = ("password", "secret", "token", "api_key", "signature", "credential", "private_key")
# A URL inside free text: a scheme, `://`, then everything up to white space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def is_secret_parameter(name: str) -> bool:
    normal = name.strip().lower().replace("-", "_")
    return normal in _SECRET_NAMES or any(part in normal for part in _SECRET_PARTS)


def redacted_url(url: str) -> str:
    """`url` with its user-info password and secret query values masked: `postgresql://u:***@host/db?password=***`.
    Text that is not a URL comes back unchanged."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    address_end = _first_of(rest, "/?#")
    authority = rest[:address_end]
    if "@" not in authority and ":" in authority and not authority.split(":", 1)[1].isdigit():
        # An unescaped '/' in a password (`u:pa/ss@host`) ends the authority early: the user-info runs to the
        # last '@' before the query.
        before_query = rest[: _first_of(rest, "?#")]
        if "@" in before_query:
            at = before_query.rindex("@")
            address_end = at + 1 + _first_of(rest[at + 1 :], "/?#")
            authority = rest[:address_end]
    if "@" in authority:
        user_info, _, host = authority.rpartition("@")
        user, has_password, _ = user_info.partition(":")
        authority = f"{user}:{MASK}@{host}" if has_password else f"{user}@{host}"
    remainder = rest[address_end:]
    path, question, query_and_fragment = remainder.partition("?")
    if question:
        query, hash_sign, fragment = query_and_fragment.partition("#")
        remainder = f"{path}?{_redacted_query(query)}{hash_sign}{fragment}"
    return f"{scheme}://{authority}{remainder}"


def redact_urls(text: str) -> str:
    """Free text (an error message) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(_redacted_match, text)


def _redacted_match(match: re.Match[str]) -> str:
    url = match.group()
    core = url.rstrip(".,:;!?)]}")  # the sentence's punctuation after a URL is not part of it
    return redacted_url(core) + url[len(core) :]


def _first_of(text: str, characters: str) -> int:
    positions = [i for i in (text.find(c) for c in characters) if i >= 0]
    return min(positions, default=len(text))


def _redacted_query(query: str) -> str:
    parts = []
    for part in re.split(r"([&;])", query):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}={MASK}" if equals and is_secret_parameter(name) else part)
    return "".join(parts)
