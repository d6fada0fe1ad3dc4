"""JSON re-encoding the way daprd's Go code does it.

When a state value carries ``contentType: application/json`` daprd decodes it into Go values
(numbers become float64) and the store encodes it again with ``encoding/json``: compact, object
keys sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, integral floats without a fraction.
Reproducing that keeps the bytes a client reads back identical to what daprd would return.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _format_float(value: float) -> str:
    # encoding/json writes the shortest representation that round-trips, in plain form from
    # 1e-6 up to 1e21 and in exponent form ("1e+21", "1e-7") outside that range.
    if not math.isfinite(value):
        raise ValueError(f"{value!r} cannot be encoded as JSON")
    shortest = repr(value)
    magnitude = abs(value)
    if magnitude == 0 or 1e-6 <= magnitude < 1e21:
        text = format(Decimal(shortest), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in {"", "-0"} and magnitude == 0 and not shortest.startswith("-") else text
    mantissa, exponent = shortest.split("e")
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))  # only reached for json.Number-style decoding (UseNumber)
    elif isinstance(value, float):
        out.append(_format_float(value))
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for raw, escaped in _ESCAPES.items():
            text = text.replace(raw, escaped)
        out.append(text)
    elif isinstance(value, list):
        out.append("[")
        for index, element in enumerate(value):
            if index:
                out.append(",")
            _encode(element, out)
        out.append("]")
    else:
        out.append("{")
        for index, key in enumerate(sorted(value)):
            if index:
                out.append(",")
            _encode(key, out)
            out.append(":")
            _encode(value[key], out)
        out.append("}")


def normalize_json(data: bytes) -> bytes:
    """Decode ``data`` as JSON and encode it as Go's ``json.Marshal`` would.

    Raises ``ValueError`` (with the decoder's reason) when ``data`` is not valid JSON.
    """
    # Go keeps the last of duplicate object keys, as Python's decoder does.
    decoded = json.loads(data.decode("utf-8"), parse_int=float)
    out: list[str] = []
    _encode(decoded, out)
    return "".join(out).encode("utf-8")


def encode(value: Any) -> bytes:
    """Encode a Python JSON value as Go's ``json.Marshal`` would (ints kept exact)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def go_json_error(data: bytes, exc: Exception) -> str:
    """Word a JSON decoding failure the way Go's ``encoding/json`` does."""
    if isinstance(exc, UnicodeDecodeError):
        return "invalid character looking for beginning of value"
    if not isinstance(exc, json.JSONDecodeError):
        return str(exc)
    document = exc.doc
    if exc.pos >= len(document.rstrip()):
        return "unexpected end of JSON input"
    char = document[exc.pos]
    if exc.msg.startswith("Extra data"):
        return f"invalid character {char!r} after top-level value"
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {char!r} looking for beginning of object key string"
    if exc.msg.startswith("Expecting value"):
        return f"invalid character {char!r} looking for beginning of value"
    return f"invalid character {char!r} {exc.msg[0].lower()}{exc.msg[1:]}"
