"""The export line of an event, assembled once at ingest.

Row shape (Mixpanel's, byte for byte): compact JSON, `event` then `properties`; inside properties
`time` first, `distinct_id` second when present, then every other key in code-point order.
"""

from __future__ import annotations

from typing import Any

import orjson

_HEAD_1 = b'{"event":'
_HEAD_2 = b',"properties":{"time":'


def assemble_line(event: str, properties: dict[str, Any], local_time: int) -> tuple[int, str]:
    """(time_pos, line): `properties` must not contain `time`; `line` ends with a newline and
    `time_pos` is the character offset where the digits of `local_time` start."""
    ordered: dict[str, Any] = {}
    if "distinct_id" in properties:
        ordered["distinct_id"] = properties["distinct_id"]
    for key in sorted(properties):
        if key != "distinct_id":
            ordered[key] = properties[key]
    head = _HEAD_1 + orjson.dumps(event) + _HEAD_2
    body = orjson.dumps(ordered)
    tail = b"}}\n" if body == b"{}" else b"," + body[1:] + b"}\n"
    head_text = head.decode()
    return len(head_text), head_text + str(local_time) + tail.decode()
