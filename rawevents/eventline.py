"""The export line of an event, assembled once at ingest.

Row shape (Mixpanel's, byte for byte): compact JSON, `event` then `properties`; inside properties
`time` first, `distinct_id` second when present, then every other key in code-point order.
"""

from __future__ import annotations

from typing import Any

import orjson

_HEAD_1 = b'{"event":'
_HEAD_2 = b',"properties":{"time":'


def line_head(event: str) -> tuple[bytes, int]:
    """The line up to the digits of `time` as UTF-8, and its length in characters (`time_pos`)."""
    head = _HEAD_1 + orjson.dumps(event) + _HEAD_2
    return head, len(head) if head.isascii() else len(head.decode())


def assemble_line(event: str, properties: dict[str, Any], local_time: int) -> tuple[int, str]:
    """(time_pos, line): `properties` must not contain `time`; `line` ends with a newline and
    `time_pos` is the character offset where the digits of `local_time` start."""
    ordered: dict[str, Any] = {}
    if "distinct_id" in properties:
        ordered["distinct_id"] = properties["distinct_id"]
    for key in sorted(properties):
        if key != "distinct_id":
            ordered[key] = properties[key]
    head, time_pos = line_head(event)
    body = orjson.dumps(ordered)
    tail = b"}}\n" if body == b"{}" else b"," + body[1:] + b"}\n"
    return time_pos, head.decode() + str(local_time) + tail.decode()
