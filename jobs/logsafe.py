"""What the job shows is safe to show: no secret, no forged line, no terminal control.

`shown(text)` is how a name (an object key, a path) appears in a log, the summary or the
report: control and other non-printable characters backslash-escaped (`\\n`, `\\r`, `\\x1b`,
`\\u202e`), bytes that are not UTF-8 as `\\xe9`. `redact(text)` replaces the values of the
credentials in use (the environment's AWS secret key and session token, and those boto3
resolved: `remember_credentials`) and the value after any Authorization, X-Amz-Security-Token,
X-Amz-Signature, X-Amz-Credential, Signature= or Credential= with `<redacted>`.

`install()` puts both on every log record the process makes (a log record factory, so it holds
for every handler, Ray's and those added later): the driver calls it in `jobs.cli`, each actor
in its constructor (Ray forwards the actors' logs to the driver and keeps them in its session
folder). A vidtrack record is escaped whole (a name holding a newline stays on its line); a
third-party record keeps its newlines and tabs (tracebacks, Ray's multi-line messages) but no
other control character. Python's last-resort traceback is redacted too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any
from urllib.parse import quote

REDACTED = "<redacted>"
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_NAMES = r"authorization|x-amz-security-token|x-amz-signature|x-amz-credential|signature|credential"
# a name, then its separator (": ", "=", "': b'", a line break), then the value up to a delimiter;
# an Authorization value runs to the end of its quotes or line (it holds spaces and commas)
_AUTH = re.compile(r"(?i)(\bauthorization['\"]?\s*[:=]\s*b?['\"]?)[^'\"\\\r\n]+")
_VALUE = re.compile(rf"(?i)(\b(?:{_NAMES})['\"]?\s*[:=]\s*b?['\"]?)[^&'\"\\\s,;}}]+")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_secrets: set[str] = set()
_lock = threading.Lock()
_installed: list[Any] = []  # the record factory this module installed, once per process


def shown(text: object, keep: str = "") -> str:
    """`text` as it may be shown: every non-printable character but those in `keep` escaped."""
    s = str(text)
    try:  # names from a local listing may carry bytes that are not UTF-8 as surrogate escapes
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeError:
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() or c in keep else _escape(c) for c in s)


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def remember_credentials(values: Iterable[str | None]) -> None:
    """Credential values to redact from now on (as they are and URL-encoded, as in a query)."""
    with _lock:
        for v in values:
            if v and len(v) >= 8:  # a short value would redact ordinary words
                _secrets.update({v, quote(v, safe="")})


def redact(text: str) -> str:
    for v in sorted(_secrets, key=len, reverse=True):
        if v in text:
            text = text.replace(v, REDACTED)
    return _VALUE.sub(rf"\1{REDACTED}", _AUTH.sub(rf"\1{REDACTED}", text))


def _clean(record: logging.LogRecord) -> None:
    keep = "" if record.name.startswith("vidtrack") else "\n\t"
    record.msg, record.args = shown(redact(record.getMessage()), keep), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = shown(redact(logging.Formatter().formatException(record.exc_info)), "\n\t")
    if record.stack_info:
        record.stack_info = shown(redact(record.stack_info), "\n\t")


def install() -> None:
    """Redact and escape every log record of this process from now on (idempotent)."""
    remember_credentials(os.environ.get(k) for k in SECRET_ENV)
    if _installed:
        return
    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        with contextlib.suppress(TypeError, ValueError):  # arguments that do not fit: logging reports it at emit
            _clean(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed.append(factory)
    hook = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        import traceback

        sys.stderr.write(shown(redact("".join(traceback.format_exception(kind, value, tb))), "\n\t"))

    if hook is sys.__excepthook__:
        sys.excepthook = excepthook
