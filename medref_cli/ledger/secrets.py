"""Keeping a ledger URL's password (or token) out of everything medref shows, records or spawns.

A URL is shown as SQLAlchemy renders it with `hide_password=True`, with the values of query
parameters that carry credentials (`password=`, `sslpassword=`, `token=`, ...) masked as well.
Free text (an error message, a traceback, a command line) is masked twice: every
`scheme://user:password@` in it loses its password, and every literal credential of the ledger
URL at hand, decoded or percent-encoded, becomes `***`. Children get the URL through the
environment (`MEDREF_LEDGER`), never on their command line. A URL without a password leaves the
password to libpq: `PGPASSWORD` or `~/.pgpass` (`PGPASSFILE`) work unchanged.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
LEDGER_ENV = "MEDREF_LEDGER"

# query parameters whose value is a credential (matched case-insensitively, as whole names or parts)
_SECRET_KEY = re.compile(r"pass(word|wd)?|pwd|secret|token|api[_-]?key|credential", re.IGNORECASE)
# scheme://user:password@ anywhere in a text (the password runs to the last @ before a blank or quote)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<pw>[^\s'\"]*)@")
# key=value pairs of a query string whose key names a credential
_QUERY_SECRET = re.compile(r"(?P<head>[?&;](?P<key>[A-Za-z0-9_.\-]+)=)(?P<value>[^&\s'\"#]*)")


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def mask_url(url: str) -> str:
    """The URL as it may be shown: password and credential query values replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: mask it as text
        return mask_text(url)
    query = {k: (MASK if _is_secret_key(k) else v) for k, v in parsed.query.items()}
    shown = parsed.set(query=query).render_as_string(hide_password=True)
    return shown.replace(quote(MASK, safe=""), MASK)


def url_secrets(url: str | None) -> list[str]:
    """Every credential a URL carries (password, credential query values), as written and decoded."""
    if not url:
        return []
    from sqlalchemy.engine import make_url

    found: set[str] = set()
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - unparsable: the text patterns below still apply
        parsed = None
    if parsed is not None:
        if parsed.password:
            found.add(str(parsed.password))
        for key, value in parsed.query.items():
            if _is_secret_key(key):
                found.update(value if isinstance(value, tuple) else (value,))
    for m in _URL_PASSWORD.finditer(url):
        found.add(m.group("pw"))
    for m in _QUERY_SECRET.finditer(url):
        if _is_secret_key(m.group("key")):
            found.add(m.group("value"))
    forms: set[str] = set()
    for secret in found:
        if secret:
            forms.update({secret, unquote(secret), quote(secret, safe=""), quote_plus(secret, safe="")})
    # longest first, so that a secret containing another is replaced whole
    return sorted((f for f in forms if f), key=len, reverse=True)


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every URL password, credential query value and literal `secrets` masked."""
    if not text:
        return text
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
    return _QUERY_SECRET.sub(lambda m: m.group("head") + (MASK if _is_secret_key(m.group("key")) else m.group("value")),
                             text)


def command_secrets(argv: Sequence[str]) -> list[str]:
    """The credentials of this command's ledger: the `--ledger` URL's and MEDREF_LEDGER's."""
    urls = [os.environ.get(LEDGER_ENV)]
    urls += [b for a, b in itertools.pairwise(argv) if a == "--ledger"]
    urls += [a[len("--ledger="):] for a in argv if a.startswith("--ledger=")]
    return [s for url in urls for s in url_secrets(url)]


def mask_argv(argv: Sequence[str], secrets: Iterable[str] = ()) -> list[str]:
    """A command line as it may be recorded: every argument masked, and the value of `--ledger`
    rendered as `mask_url` does."""
    secrets = list(secrets)
    out: list[str] = []
    after_ledger = False
    for arg in argv:
        if after_ledger:
            out.append(mask_url(arg))
        elif arg.startswith("--ledger="):
            out.append("--ledger=" + mask_url(arg[len("--ledger="):]))
        else:
            out.append(mask_text(arg, secrets))
        after_ledger = arg == "--ledger"
    return out


def masked_command(argv: Sequence[str], secrets: Iterable[str] = ()) -> str:
    """`mask_argv` joined into one line."""
    return " ".join(mask_argv(argv, secrets))
