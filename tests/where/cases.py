"""The fixed corpus of tricky cases: (expression, event properties, expected selection).

Every case runs through the reference evaluator and the compiled SQL (test_agreement.py).
`T0` is the event instant used unless a case says otherwise: 2024-01-25T12:00:00Z.
"""

from __future__ import annotations

from typing import Any

T0 = 1_706_184_000_000

# (expression, properties, expected) — the §4.9 worked examples first.
WORKED_EXAMPLES: list[tuple[str, dict[str, Any], bool]] = [
    ('properties["plan"] == "pro"', {"plan": "pro"}, True),
    ('properties["n"] == 5', {"n": "5"}, False),
    ('number(properties["n"]) == 5', {"n": "5"}, True),
    ('properties["n"] > 3', {"n": "5"}, False),
    ('properties["x"] != "a"', {}, True),
    ('not "fb" in properties["ref"]', {}, True),
    ('"fb" in properties["ref"]', {"ref": "m.fb.com"}, True),
    ('properties["id"] in [1,2,3]', {"id": 2}, True),
    ('properties["id"] in [1,2,3]', {"id": "2"}, False),
    ('"P2" in list(properties["ids"])', {"ids": ["P1", "P2"]}, True),
    ('defined (properties["a"]) and properties["a"] > 1', {}, False),
    ("-7 % 3 == -1", {}, True),
    ("1 / 0 == 1", {}, False),
    ('properties["$time"] >= datetime(1706184000)', {}, True),
    ('boolean(properties["f"]) == false', {"f": "false"}, True),
]

TRICKY: list[tuple[str, dict[str, Any], bool]] = [
    # numbers: JSON ints and floats are one type
    ('properties["n"] == 1', {"n": 1.0}, True),
    ('properties["n"] == 1.0', {"n": 1}, True),
    ('properties["n"] == properties["m"]', {"n": 1, "m": 1.0}, True),
    ('properties["n"] >= 9007199254740993', {"n": 9007199254740992}, True),
    ('properties["n"] == "1"', {"n": 1}, False),
    ('properties["n"] != "1"', {"n": 1}, True),
    ('string(properties["n"]) == "1"', {"n": 1.0}, True),
    ('string(properties["n"]) == "0.1"', {"n": 0.1}, True),
    ('string(properties["n"]) == "1e+16"', {"n": 1e16}, True),
    ('string(properties["n"]) == "-0"', {"n": -0.0}, True),
    ('number(" 5") == 5', {}, False),
    ('number("1_000") == 1000', {}, False),
    ('defined(number("1e400"))', {}, False),
    ('number(properties["s"]) == 0.5', {"s": ".5"}, True),
    ('number(properties["b"]) == 1', {"b": True}, True),
    ('properties["b"] + 1 == 2', {"b": True}, False),
    # null vs missing
    ('defined(properties["a"])', {"a": None}, False),
    ('defined(properties["a"])', {"a": 0}, True),
    ('properties["a"] == properties["b"]', {"a": None, "b": None}, True),
    ('properties["a"] == properties["b"]', {}, False),
    ('properties["a"] != properties["b"]', {}, True),
    ('not properties["a"]', {"a": None}, True),
    ('not properties["a"]', {"a": "x"}, False),
    ('string(properties["a"], "d") == "d"', {"a": None}, True),
    ('string(properties["a"], "d") == "d"', {}, True),
    ('string(properties["a"], "d") == "d"', {"a": ["x"]}, True),
    ('boolean(properties["a"], true)', {}, True),
    ('boolean(properties["a"], true)', {"a": 0}, False),
    ('number(properties["a"], 7) == 7', {"a": "x"}, True),
    ('not (boolean(properties["x"], "d") or false)', {}, True),
    ('not (boolean(properties["x"], "d") and true)', {"x": 1}, False),
    # lists and objects
    ('properties["l"] == properties["l"]', {"l": [1]}, False),
    ('1 in properties["l"]', {"l": ["1", 1.0, None]}, True),
    ('"1" in properties["l"]', {"l": [1, None, True]}, False),
    ('true in properties["l"]', {"l": [1, None, True]}, True),
    ('not "x" in properties["l"]', {"l": [1, {"x": 1}]}, True),
    ('"x" in properties["o"]', {"o": {"x": 1}}, False),
    ('not "x" in properties["o"]', {"o": {"x": 1}}, True),
    ('properties["o"]["k"] == 1', {"o": {"k": 1}}, True),
    ('properties["o"]["0"] == 1', {"o": [1]}, False),
    ('properties["o"]["0"] == 1', {"o": {"0": 1}}, True),
    ('properties["o"][0] == 1', {"o": [1]}, True),
    ('properties["o"][0] == 1', {"o": {"0": 1}}, False),
    ('properties["o"]["a"]["b"] == "c"', {"o": {"a": {"b": "c"}}}, True),
    ('any(X, properties["l"], X["k"] == "V")', {"l": [{"k": "W"}, {"k": "V"}]}, True),
    ('any(X, properties["l"], X == 2)', {"l": 2}, True),
    ('any(X, properties["l"], not defined(X))', {}, False),
    ('all(X, properties["l"], X > 1)', {"l": []}, True),
    ('all(X, properties["l"], X > 1)', {"l": [2, "3"]}, False),
    ('all(X, properties["l"], X > 1)', {}, False),
    ('any(X, [1, 2, properties["n"]], X == 5)', {"n": 5}, True),
    ('any(X, properties["l"], any(Y, X, Y == "z"))', {"l": [["a"], ["z"]]}, True),
    ('boolean(properties["l"])', {"l": []}, False),
    ('boolean(properties["l"])', {"l": [0]}, True),
    ('boolean(properties["o"])', {"o": {}}, True),
    ('defined(list(properties["s"]))', {"s": "abc"}, False),
    # or-chains of equalities (merged into one membership test per subject) and list literals
    (
        'properties["n"] == 1 or properties["n"] == "x" or properties["n"] == true or properties["m"] == 2',
        {"n": True},
        True,
    ),
    (
        'properties["n"] == 1 or properties["n"] == "x" or properties["n"] == true or properties["m"] == 2',
        {"n": "1"},
        False,
    ),
    (
        'properties["n"] == 1 or properties["n"] == "x" or properties["n"] == true or properties["m"] == 2',
        {"n": 1.0},
        True,
    ),
    (
        'properties["n"] == 1 or properties["n"] == "x" or properties["n"] == true or properties["m"] == 2',
        {"m": 2},
        True,
    ),
    ('"a" == properties["n"] or properties["n"] == "b" or defined(properties["q"])', {"q": None}, False),
    ('properties["n"] in ["a", 1, true, datetime(1706184000)]', {"n": True}, True),
    ('properties["$time"] in [datetime(1706184000), 5]', {}, True),
    ('0 == properties["z"] or properties["z"] == 1', {"z": -0.0}, True),
    ('properties["z"] in [properties["y"], "k"]', {"z": None, "y": None}, True),
    ('any(X, properties["l"], X == "a" or X == "b" or X == 3)', {"l": [1, 3]}, True),
    # strings
    ('properties["s"] > "B"', {"s": "a"}, True),
    ('properties["s"] < "é"', {"s": "z"}, True),
    ('"" in properties["s"]', {"s": ""}, True),
    ('properties["s"] + "!" == "hi!"', {"s": "hi"}, True),
    ('boolean(properties["s"])', {"s": "False"}, True),
    ('boolean(properties["s"])', {"s": ""}, False),
    # arithmetic edge cases
    ("-7 % -3 == -1", {}, True),
    ("7 % -3 == 1", {}, True),
    ('properties["n"] % 0 == 0', {"n": 5}, False),
    ('not (properties["n"] / 0 > 0)', {"n": 5}, True),
    ('defined(properties["n"] * 1e308)', {"n": 10}, False),
    ("round(2.5) == 3 and round(-2.5) == -3 and round(0.49999999999999994) == 0", {}, True),
    ("floor(-0.5) == -1 and ceil(-0.5) == 0", {}, True),
    ('string(ceil(properties["n"])) == "-0"', {"n": -0.5}, True),
    # keywords and syntax variants
    ('properties["plan"] = "pro" AND NOT properties["x"] OR FALSE', {"plan": "pro"}, True),
    ('properties["id"] not in [1, 2]', {"id": 3}, True),
    ("TRUE", {}, True),
    ('properties["flag"]', {"flag": True}, True),
    ('properties["flag"]', {"flag": "true"}, False),
    # datetimes
    ('properties["$time"] == datetime(1706184000000)', {}, True),
    ('event["time"] < datetime("2024-01-25T12:00:00.001Z")', {}, True),
    ('event["$time"] > "2024-01-25"', {}, True),
    ('event["$time"] == "2024-01-25T12:00:00Z"', {}, False),
    ('properties["d"] < properties["$time"]', {"d": "2024-01-25T11:59:59+00:00"}, True),
    ('properties["d"] < properties["$time"]', {"d": "2024-01-25T13:59:59+02:00"}, True),
    ('properties["d"] < properties["$time"]', {"d": "2024-01-25T14:00:01+02:00"}, False),
    ('properties["d"] < properties["$time"]', {"d": "2024-02-30"}, False),
    ('not (properties["d"] < properties["$time"])', {"d": "not a date"}, True),
    ('datetime(properties["d"]) == datetime("2014-09-09")', {"d": "2014-09-9"}, True),
    ('datetime(properties["n"]) == properties["$time"]', {"n": 1706184000}, True),
    ('datetime(properties["n"]) == properties["$time"]', {"n": 1706184000000}, True),
    ('string(properties["$time"]) == "2024-01-25T12:00:00.000Z"', {}, True),
    ('properties["time"] == 1706184000', {}, True),
    ('defined(properties["time"]) and not defined(user["time"])', {}, True),
    ('event["name"] == "e" and event["$event_name"] == "e"', {}, True),
    ('properties["$distinct_id"] == "u1"', {"distinct_id": "u1"}, True),
    # keys that need escaping
    ('properties["we\\"ird.[0] key"] == 1', {'we"ird.[0] key': 1}, True),
    ('properties["a/b~c"] == 1', {"a/b~c": 1}, True),
    ('properties["ключ 🔑"] == "значение"', {"ключ 🔑": "значение"}, True),
    ('properties[""] == 1', {"": 1}, True),
    ("properties['single'] == 'quoted'", {"single": "quoted"}, True),
    ('properties["k"] == "\\u00e9\\n\\t"', {"k": "é\n\t"}, True),
]

# Naive datetime strings read in the project timezone (DST gap and repeated hour in New York).
NEW_YORK: list[tuple[str, dict[str, Any], int, bool]] = [
    ('properties["$time"] == datetime("2024-03-10T02:30:00")', {}, 1_710_055_800_000, True),
    ('properties["$time"] == datetime("2024-11-03T01:30:00")', {}, 1_730_611_800_000, True),
    ('properties["$time"] >= properties["d"]', {"d": "2024-11-03T01:30:00"}, 1_730_611_800_000, True),
    ('properties["$time"] > properties["d"]', {"d": "2024-11-03T01:30:00"}, 1_730_611_800_000, False),
    ('properties["$time"] == datetime(properties["d"])', {"d": "2024-03-10 02:30"}, 1_710_055_800_000, True),
    ('properties["$time"] == datetime(properties["d"])', {"d": "2024-07-01"}, 1_719_806_400_000, True),
]
