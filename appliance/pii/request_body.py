"""Everything in a request body that the provider would receive as text.

We do not trust a per-endpoint list of fields: a new API field, a tool result nested three levels down or a
provider extension would silently escape the scan. Instead every string value *and every key* in the parsed
JSON is scanned, whatever the provider or endpoint, each key right before its value; large numbers are scanned
as their digits, whether integers, negatives or integral floats (a card number sent as a JSON number still
reaches the provider); and a string holding JSON with escapes (tool-call ``arguments``) is decoded and walked
in turn. Only binary payloads are skipped, because their bytes are not
text the pattern detectors could read:

- ``data:<mime>;base64,...`` URLs (OpenAI ``image_url.url``, Responses ``input_image.image_url``,
  ``input_file.file_data``);
- the value of a ``data``, ``file_data`` or ``b64_json`` key that is pure base64 of at least
  ``_MIN_BINARY_CHARS`` characters (OpenAI ``input_audio.data``, Anthropic ``source: {type: "base64", data}``).

Text documents (Anthropic ``source: {type: "text"}``) are scanned; see docs/pii.md for the residual risk.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Final

from ..errors import PiiScanError

__all__ = ["MAX_DEPTH", "MAX_JSON_IN_STRING", "iter_request_texts"]

# Deeper JSON than this is not something an SDK sends; refusing it also keeps recursion bounded.
MAX_DEPTH: Final = 64
_BINARY_KEYS: Final = frozenset({"data", "file_data", "b64_json"})
# Shorter "data" strings are scanned: a 200-character field is more likely text than an image.
_MIN_BINARY_CHARS: Final = 256
_BASE64: Final = re.compile(r"[A-Za-z0-9+/=\r\n_\-]+")
_DATA_URL: Final = re.compile(r"data:[\w.+\-]+/[\w.+\-]+(?:;[\w.+\-]+=[\w.+\-]+)*;base64,")
# A string holding JSON (tool-call ``arguments`` is JSON text inside the JSON body) is decoded and its strings
# scanned too; a string in that JSON may hold JSON again, up to this many levels. Deeper is no SDK's doing.
MAX_JSON_IN_STRING: Final = 8
_NOT_JSON: Final = object()
_JSON_HEAD: Final = re.compile(r"\s*[\[{]")
# Float literals the numeric detector already reads in the text itself ("5425233430109903.0": an integer part
# of 12+ digits, at most two decimals; numeric.py); yielding their digits as well would count the value twice.
_AMOUNT: Final = re.compile(r"-?\d{12,}\.\d{1,2}")
# Stands in for the parent key of a mapping key: a key is never a binary payload.
_KEY: Final = object()
# Integers below this are counts, ids, token ids (embeddings ``input`` arrays) and parameters, never PII.
_MIN_SCANNED_INT: Final = 1_000_000
# No identifier has more than 19 digits (a card number); larger floats are measurements, not ids.
_MAX_SCANNED_FLOAT: Final = 1e20


def _is_binary(key: object, value: str) -> bool:
    if value.startswith("data:"):
        m = _DATA_URL.match(value)
        return m is not None and _BASE64.fullmatch(value, m.end()) is not None
    return key in _BINARY_KEYS and len(value) >= _MIN_BINARY_CHARS and _BASE64.fullmatch(value) is not None


def _decoded_json(value: str, nesting: int, floats: list[str]) -> object:
    """The JSON a string value holds (tool-call ``arguments``, a pasted payload), or ``_NOT_JSON``.

    The digits of its integral floats ("5425233430109903.0", "5.4252334e15") are appended to ``floats``.
    """
    if _JSON_HEAD.match(value) is None:
        return _NOT_JSON

    def keep_float(literal: str) -> float:
        number = float(literal)
        digits = _number_text(number)
        if digits is not None and _AMOUNT.fullmatch(literal) is None:
            floats.append(digits)
        return number

    try:
        decoded = json.loads(value, parse_float=keep_float)
    except RecursionError as e:  # thousands of "[": pathological, and what we cannot read we do not forward
        raise PiiScanError("PII scan failed closed: JSON inside a string value nests too deeply") from e
    except ValueError:
        floats.clear()
        return _NOT_JSON  # prose or code that merely starts with a bracket: scanned as it is
    if not isinstance(decoded, dict | list):
        floats.clear()
        return _NOT_JSON
    if nesting >= MAX_JSON_IN_STRING:
        raise PiiScanError(
            f"PII scan failed closed: JSON encoded inside strings more than {MAX_JSON_IN_STRING} levels deep"
        )
    return decoded


def _number_text(value: int | float) -> str | None:
    """The digits a provider would read in a JSON number, or None for a small or fractional one."""
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer() or abs(value) >= _MAX_SCANNED_FLOAT:
            return None  # 3.14, 1e308: no identifier survives as a fraction or a 300-digit float
        value = int(value)  # 5425233430109903.0 and 5.425233430109903e15 are a card number all the same
    value = abs(value)  # "-5425233430109903": the sign does not make the digits any less a card number
    return str(value) if value >= _MIN_SCANNED_INT else None


def iter_request_texts(body: object) -> Iterator[str]:
    """Yield every text the provider would receive; raise ``PiiScanError`` for what we cannot read.

    Texts come in document order, each key right before its value, so a label ("ssn", "routing_number") is
    next to the value it names when the scanner joins the texts (context words look back 80 characters).
    """
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            raise PiiScanError("PII scan failed closed: request body is not UTF-8 text") from e
    # (key, value, depth, JSON-in-string nesting); a LIFO stack, so children are pushed in reverse order.
    stack: list[tuple[object, object, int, int]] = [(None, body, 0, 0)]
    while stack:
        key, value, depth, nesting = stack.pop()
        if isinstance(value, str):
            if _is_binary(key, value):
                continue
            floats: list[str] = []
            decoded = _decoded_json(value, nesting, floats) if depth > 0 else _NOT_JSON
            if decoded is _NOT_JSON or "\\" not in value:
                # Plain text, or JSON without escapes: its strings and keys are in it verbatim, keys next to
                # their values; only its float literals need reading as digits.
                yield value
                yield from floats
            else:
                # JSON text with escapes inside a string (tool-call ``arguments``): walked decoded instead, so
                # "\u0040" and "\u0035" are read as "@" and "5" as the tool will read them, and JSON inside
                # that JSON is decoded in turn. Nothing is lost: every string, key and number comes out of it.
                stack.append((key, decoded, depth + 1, nesting + 1))
        elif isinstance(value, Mapping):
            if depth >= MAX_DEPTH:
                raise PiiScanError(f"PII scan failed closed: request body nested deeper than {MAX_DEPTH} levels")
            for k, v in reversed(list(value.items())):
                if not isinstance(k, str):
                    raise PiiScanError(f"PII scan failed closed: unsupported key type {type(k).__name__}")
                stack.append((k, v, depth + 1, nesting))
                stack.append((_KEY, k, depth + 1, nesting))
        elif isinstance(value, list | tuple):
            if depth >= MAX_DEPTH:
                raise PiiScanError(f"PII scan failed closed: request body nested deeper than {MAX_DEPTH} levels")
            stack.extend((key, v, depth + 1, nesting) for v in reversed(value))
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int | float):
            digits = _number_text(value)
            if digits is not None:
                yield digits
        else:
            raise PiiScanError(f"PII scan failed closed: unsupported value type {type(value).__name__} in body")
