"""Everything in a request body that the provider would receive as text.

We do not trust a per-endpoint list of fields: a new API field, a tool result nested three levels down or a
provider extension would silently escape the scan. Instead every string value *and every key* in the parsed
JSON is scanned, whatever the provider or endpoint, and large integers are scanned as text (a card number sent
as a JSON number still reaches the provider). Only binary payloads are skipped, because their bytes are not
text the pattern detectors could read:

- ``data:<mime>;base64,...`` URLs (OpenAI ``image_url.url``, Responses ``input_image.image_url``,
  ``input_file.file_data``);
- the value of a ``data``, ``file_data`` or ``b64_json`` key that is pure base64 of at least
  ``_MIN_BINARY_CHARS`` characters (OpenAI ``input_audio.data``, Anthropic ``source: {type: "base64", data}``).

Text documents (Anthropic ``source: {type: "text"}``) are scanned; see docs/pii.md for the residual risk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Final

from ..errors import PiiScanError

__all__ = ["MAX_DEPTH", "iter_request_texts"]

# Deeper JSON than this is not something an SDK sends; refusing it also keeps recursion bounded.
MAX_DEPTH: Final = 64
_BINARY_KEYS: Final = frozenset({"data", "file_data", "b64_json"})
# Shorter "data" strings are scanned: a 200-character field is more likely text than an image.
_MIN_BINARY_CHARS: Final = 256
_BASE64: Final = re.compile(r"[A-Za-z0-9+/=\r\n_\-]+")
_DATA_URL: Final = re.compile(r"data:[\w.+\-]+/[\w.+\-]+(?:;[\w.+\-]+=[\w.+\-]+)*;base64,")
# Integers below this are counts, ids, token ids (embeddings ``input`` arrays) and parameters, never PII.
_MIN_SCANNED_INT: Final = 1_000_000


def _is_binary(key: object, value: str) -> bool:
    if value.startswith("data:"):
        m = _DATA_URL.match(value)
        return m is not None and _BASE64.fullmatch(value, m.end()) is not None
    return key in _BINARY_KEYS and len(value) >= _MIN_BINARY_CHARS and _BASE64.fullmatch(value) is not None


def iter_request_texts(body: object) -> Iterator[str]:
    """Yield every text the provider would receive; raise ``PiiScanError`` for what we cannot read."""
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            raise PiiScanError("PII scan failed closed: request body is not UTF-8 text") from e
    stack: list[tuple[object, object, int]] = [(None, body, 0)]
    while stack:
        key, value, depth = stack.pop()
        if isinstance(value, str):
            if not _is_binary(key, value):
                yield value
        elif isinstance(value, Mapping):
            if depth >= MAX_DEPTH:
                raise PiiScanError(f"PII scan failed closed: request body nested deeper than {MAX_DEPTH} levels")
            for k, v in value.items():
                if not isinstance(k, str):
                    raise PiiScanError(f"PII scan failed closed: unsupported key type {type(k).__name__}")
                yield k
                stack.append((k, v, depth + 1))
        elif isinstance(value, list | tuple):
            if depth >= MAX_DEPTH:
                raise PiiScanError(f"PII scan failed closed: request body nested deeper than {MAX_DEPTH} levels")
            stack.extend((key, v, depth + 1) for v in reversed(value))
        elif isinstance(value, bool) or value is None or isinstance(value, float):
            continue
        elif isinstance(value, int):
            if abs(value) >= _MIN_SCANNED_INT:
                yield str(value)
        else:
            raise PiiScanError(f"PII scan failed closed: unsupported value type {type(value).__name__} in body")
