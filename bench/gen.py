"""A deterministic generator of realistic Mixpanel-like events, vectorised with numpy + Arrow.

Shape of the data (documented in docs/performance.md):
- 30 event names with Zipf frequency (weight 1/rank).
- up to 100k users, activity Zipf-like (weight 1/(rank + 20), so the busiest user has ~0.6 %).
  Each user has fixed device/geo properties ($os, $browser, $city, $region, mp_country_code, …).
- 20–40 properties per event of every JSON type: strings, ints, floats, booleans, null, lists,
  and an occasional nested object (`utm`, ~8 %); `$insert_id` (36 letters) on every event.
- times spread uniformly over 30 days, arriving in time order except ~2 % late events
  (up to 3 days late, like mobile offline queues).
- ≈700–750 bytes per export line (25–36 properties).
- `identity` (an IdentityMix, for bench.run's identity case): Simplified ID Merge traffic. Some
  users ("identified later") send every event with a `$device_id` (a third of them from two
  devices, half their events each) and identify at a time drawn uniformly over the 30 days:
  before it their events carry only `$device_id` (distinct_id `$device:<id>`), from it on
  `$device_id` and `$user_id` (the first such event of a device links it). Enough users are
  drawn that ≈ `share` of the events are anonymous events of a device linked later, from
  minutes to weeks after they happened. `linked=False` is the same events with `$user_id`
  removed from the link-carrying ones (every event of those users stays anonymous: no link).

Every column is built for a whole chunk at once: values are drawn with numpy, turned into JSON
fragments (`"key":value`) with Arrow compute, and the fragments of the present keys are joined in
the export key order. A chunk of 1M events takes a few seconds; chunk `i` depends only on
(seed, i), so any size is reproducible and can be generated chunk by chunk in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

DAY_MS = 86_400_000
# 2026-10-01T00:00:00Z: 30 days of data end on 2026-10-30 (inclusive), a fixed window so every
# run exports the same rows.
START_MS = 1_790_812_800_000
DAYS = 30
CHUNK_EVENTS = 1_000_000

EVENT_NAMES = [
    "$mp_web_page_view",
    "Page View",
    "Button Click",
    "$session_start",
    "Search",
    "View Item",
    "Add to Cart",
    "Scroll",
    "Video Play",
    "Login",
    "$identify",
    "Form Submit",
    "Remove from Cart",
    "Share",
    "Begin Checkout",
    "Purchase",
    "Sign Up",
    "Notification Open",
    "App Open",
    "App Background",
    "Rate App",
    "Invite Sent",
    "Subscription Started",
    "Subscription Cancelled",
    "Error",
    "Download",
    "Comment",
    "Like",
    "Logout",
    "$create_alias",
]
COMMERCE = {"View Item", "Add to Cart", "Remove from Cart", "Begin Checkout", "Purchase"}

BROWSERS = [("Chrome", 45), ("Safari", 18), ("Mobile Safari", 12), ("Firefox", 7), ("Edge", 8)]
BROWSERS += [("Samsung Internet", 4), ("Opera", 2), ("Chrome iOS", 3), ("Android Mobile", 1)]
OSES = [("Windows", 38), ("Mac OS X", 17), ("iOS", 22), ("Android", 18), ("Linux", 3), ("Chrome OS", 2)]
# (city, region, country code, weight): mp_country_code == "DE" is ≈4 % of users.
CITIES = [
    ("San Francisco", "California", "US", 6),
    ("New York", "New York", "US", 8),
    ("Los Angeles", "California", "US", 5),
    ("Chicago", "Illinois", "US", 4),
    ("Austin", "Texas", "US", 3),
    ("Seattle", "Washington", "US", 3),
    ("Boston", "Massachusetts", "US", 3),
    ("London", "England", "GB", 6),
    ("Manchester", "England", "GB", 2),
    ("Paris", "Île-de-France", "FR", 4),
    ("Lyon", "Auvergne-Rhône-Alpes", "FR", 1),
    ("Berlin", "Berlin", "DE", 1.6),
    ("München", "Bavaria", "DE", 1.2),
    ("Hamburg", "Hamburg", "DE", 0.7),
    ("Köln", "North Rhine-Westphalia", "DE", 0.5),
    ("Amsterdam", "North Holland", "NL", 2),
    ("Madrid", "Madrid", "ES", 2),
    ("Barcelona", "Catalonia", "ES", 2),
    ("Milan", "Lombardy", "IT", 2),
    ("Zürich", "Zurich", "CH", 1),
    ("Stockholm", "Stockholm", "SE", 1),
    ("Warsaw", "Mazovia", "PL", 1),
    ("São Paulo", "São Paulo", "BR", 4),
    ("Mexico City", "Mexico City", "MX", 3),
    ("Toronto", "Ontario", "CA", 3),
    ("Vancouver", "British Columbia", "CA", 1),
    ("Sydney", "New South Wales", "AU", 2),
    ("Melbourne", "Victoria", "AU", 1),
    ("Tokyo", "Tokyo", "JP", 3),
    ("Seoul", "Seoul", "KR", 2),
    ("Singapore", "Singapore", "SG", 2),
    ("Bengaluru", "Karnataka", "IN", 4),
    ("Mumbai", "Maharashtra", "IN", 3),
    ("Jakarta", "Jakarta", "ID", 2),
    ("Lagos", "Lagos", "NG", 1),
    ("Cairo", "Cairo", "EG", 1),
    ("Istanbul", "Istanbul", "TR", 2),
    ("Dubai", "Dubai", "AE", 1),
    ("Buenos Aires", "Buenos Aires", "AR", 1),
    ("Kyiv", "Kyiv City", "UA", 1),
]
PATHS = ["", "pricing", "docs", "blog", "product", "cart", "checkout", "account", "search", "help"]
REFERRERS = ["https://www.google.com/", "https://twitter.com/", "https://www.facebook.com/", "$direct"]
REFERRERS += ["https://news.ycombinator.com/", "https://www.bing.com/", "https://duckduckgo.com/"]
UTM_SOURCES = ["google", "newsletter", "twitter", "facebook", "partner", "linkedin"]
UTM_MEDIUMS = ["cpc", "email", "social", "referral"]
TAGS = ["new", "sale", "featured", "beta", "premium", "holiday", "bundle", "limited", "clearance"]
PLANS = [("free", 70), ("pro", 22), ("team", 6), ("enterprise", 2)]
LIBS = [("web", "2.55.1"), ("web", "2.47.0"), ("iphone", "4.2.0"), ("android", "7.5.2")]
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

# Added by the server at ingest, so present in stored/exported lines but not sent by clients.
SERVER_KEYS = frozenset({"$import", "$mp_api_endpoint", "$mp_api_timestamp_ms", "mp_processing_time_ms"})


@dataclass(frozen=True)
class IdentityMix:
    """Simplified ID Merge traffic (module docstring): `share` of the events are anonymous events
    of devices identified later; `linked=False`: the same events without the links."""

    share: float = 0.3
    linked: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 0.5:
            raise ValueError("the identified-later share must be within [0, 0.5]")


@dataclass(frozen=True)
class Chunk:
    """One generated chunk: the stored columns plus the client's /import JSON objects."""

    time_ms: pa.Array  # int64, UTC ms
    event: pa.Array  # string
    distinct_id: pa.Array  # string
    insert_id: pa.Array  # string
    time_pos: pa.Array  # int32: character offset of the time digits in `line`
    line: pa.Array  # string: the export line (UTC project), newline included
    body: pa.Array  # string: the /import JSON object (time in ms, no server-added keys)
    # IdentityMix: the link each event makes (`$device:<id>` → user id; null: none)
    link_source: pa.Array | None = None
    link_target: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.line)


def _weights(pairs: list[tuple[str, float]] | list[float]) -> np.ndarray:
    w = np.array([p[1] if isinstance(p, tuple) else p for p in pairs], dtype=np.float64)
    return w / w.sum()


def _fixed_strings(codes: np.ndarray) -> pa.Array:
    """A string array from an (n, width) uint8 matrix of ASCII codes."""
    n, width = codes.shape
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * width).tobytes())
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(np.ascontiguousarray(codes).tobytes()))


def _uuids(rng: np.random.Generator, n: int) -> pa.Array:
    codes = _HEX[rng.integers(0, 16, size=(n, 36), dtype=np.uint8)]
    codes[:, [8, 13, 18, 23]] = ord("-")
    return _fixed_strings(codes)


def _frag(key: str, values: list[object]) -> pa.Array:
    """`"key":<json value>` for every value of a small pool."""
    prefix = orjson.dumps(key).decode() + ":"
    return pa.array([prefix + orjson.dumps(v).decode() for v in values], pa.string())


def _pool(key: str, values: list[object], idx: np.ndarray, present: np.ndarray | None = None) -> pa.Array:
    indices = pa.array(idx.astype(np.int32), mask=None if present is None else ~present)
    return _frag(key, values).take(indices)


def _concat(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _number(key: str, values: np.ndarray, present: np.ndarray | None = None) -> pa.Array:
    text = pc.cast(pa.array(values), pa.string())
    out = _concat(orjson.dumps(key).decode() + ":", text)
    if present is not None:
        out = pc.if_else(pa.array(present), out, pa.scalar(None, pa.string()))
    return out


def _quoted(key: str, values: pa.Array) -> pa.Array:
    return _concat(orjson.dumps(key).decode() + ':"', values, '"')


class _Users:
    def __init__(self, seed: int, n_users: int) -> None:
        rng = np.random.default_rng([seed, 0xC0FFEE])
        self.n = n_users
        rank = np.arange(1, n_users + 1, dtype=np.float64)
        self.p = 1.0 / (rank + 20.0)
        self.p /= self.p.sum()
        self.ids = _uuids(rng, n_users)
        self.browser = rng.choice(len(BROWSERS), n_users, p=_weights(BROWSERS))
        self.browser_version = rng.integers(100, 132, n_users)
        self.os = rng.choice(len(OSES), n_users, p=_weights(OSES))
        self.city = rng.choice(len(CITIES), n_users, p=_weights([c[3] for c in CITIES]))
        self.screen = rng.integers(0, 6, n_users)
        self.lib = rng.integers(0, len(LIBS), n_users)
        self.plan = rng.choice(len(PLANS), n_users, p=_weights(PLANS))
        self.has_user_id = rng.random(n_users) < 0.4


_USERS: dict[tuple[int, int], _Users] = {}


class _Devices:
    """Who identifies later (IdentityMix), with which devices, and when. Users are drawn at random
    until the expected number of anonymous events whose device is linked by the end of the 30 days
    reaches `share` of the events: a device's events form a Poisson process over the days, so
    that expectation is known per user before any event is drawn."""

    def __init__(self, seed: int, users: _Users, n_events: int, share: float) -> None:
        rng = np.random.default_rng([seed, 0x1D])
        order = rng.permutation(users.n)
        position = rng.random(users.n)  # of the link time in the 30 days
        self.link_ms = START_MS + (position * DAYS * DAY_MS).astype(np.int64)
        self.two = rng.random(users.n) < 1 / 3
        self.first = _uuids(rng, users.n)
        self.second = _uuids(rng, users.n)
        # Per device: events before the link time, counted if one event comes after it.
        per_device = n_events * users.p * np.where(self.two, 0.5, 1.0)
        before = per_device * position * (1 - np.exp(-per_device * (1 - position)))
        linked = np.cumsum((before * np.where(self.two, 2, 1))[order])
        self.later = np.zeros(users.n, dtype=bool)
        self.later[order[: int(np.searchsorted(linked, share * n_events)) + 1]] = True


_DEVICES: dict[tuple[int, int, float], _Devices] = {}


def _devices(seed: int, users: _Users, n_events: int, share: float) -> _Devices:
    key = (seed, n_events, share)
    if key not in _DEVICES:
        _DEVICES[key] = _Devices(seed, users, n_events, share)
    return _DEVICES[key]


def _users(seed: int, n_users: int) -> _Users:
    key = (seed, n_users)
    if key not in _USERS:
        _USERS[key] = _Users(seed, n_users)
    return _USERS[key]


def generate(
    n_events: int, seed: int = 42, chunk_events: int = CHUNK_EVENTS, identity: IdentityMix | None = None
) -> Iterator[Chunk]:
    """Yield `n_events` events in chunks of at most `chunk_events`, in (approximate) time order."""
    n_users = max(10, min(100_000, n_events // 10))
    users = _users(seed, n_users)
    devices = None if identity is None else _devices(seed, users, n_events, identity.share)
    done = 0
    index = 0
    while done < n_events:
        n = min(chunk_events, n_events - done)
        yield _chunk(seed, index, n, done, n_events, users, identity, devices)
        done += n
        index += 1


def _chunk(
    seed: int,
    index: int,
    n: int,
    first: int,
    total: int,
    users: _Users,
    identity: IdentityMix | None = None,
    devices: _Devices | None = None,
) -> Chunk:
    rng = np.random.default_rng([seed, index])
    span = DAYS * DAY_MS
    # This chunk's share of the 30 days, in time order; ~2 % arrive up to 3 days late.
    lo = START_MS + span * first // total
    hi = START_MS + span * (first + n) // total
    time_ms = np.sort(rng.integers(lo, hi, n, dtype=np.int64))
    late = rng.random(n) < 0.02
    time_ms = np.where(late, time_ms - rng.integers(0, 3 * DAY_MS, n), time_ms)
    time_ms = np.maximum(time_ms, START_MS)

    ev_rank = np.arange(1, len(EVENT_NAMES) + 1, dtype=np.float64)
    ev = rng.choice(len(EVENT_NAMES), n, p=(1 / ev_rank) / (1 / ev_rank).sum())
    u = rng.choice(users.n, n, p=users.p)
    commerce = np.isin(ev, [EVENT_NAMES.index(e) for e in COMMERCE])
    search = ev == EVENT_NAMES.index("Search")

    frags: dict[str, pa.Array] = {}
    # Per-user properties.
    frags["$browser"] = _pool("$browser", [b for b, _ in BROWSERS], users.browser[u])
    frags["$browser_version"] = _number("$browser_version", users.browser_version[u])
    frags["$os"] = _pool("$os", [o for o, _ in OSES], users.os[u])
    frags["$city"] = _pool("$city", [c[0] for c in CITIES], users.city[u])
    frags["$region"] = _pool("$region", [c[1] for c in CITIES], users.city[u])
    frags["mp_country_code"] = _pool("mp_country_code", [c[2] for c in CITIES], users.city[u])
    u_idx = pa.array(u.astype(np.int32))
    sizes = [(1920, 1080), (1440, 900), (2560, 1440), (390, 844), (412, 915), (1366, 768)]
    frags["$screen_height"] = _pool("$screen_height", [h for _, h in sizes], users.screen[u])
    frags["$screen_width"] = _pool("$screen_width", [w for w, _ in sizes], users.screen[u])
    frags["mp_lib"] = _pool("mp_lib", [lib for lib, _ in LIBS], users.lib[u])
    frags["$lib_version"] = _pool("$lib_version", [v for _, v in LIBS], users.lib[u])
    frags["plan"] = _pool("plan", [p for p, _ in PLANS], users.plan[u])
    ids = users.ids.take(u_idx)
    user_ids = pc.if_else(
        pa.array(users.has_user_id[u]), _quoted("$user_id", ids), pa.scalar(None, pa.string())
    )
    frags["$user_id"] = user_ids
    link_source = link_target = None
    if identity is not None and devices is not None:
        # Drawn from their own generator: every other column is the same as without `identity`.
        dev_rng = np.random.default_rng([seed, index, 0x1D])
        later = devices.later[u]
        second = pa.array(devices.two[u] & (dev_rng.random(n) < 0.5))
        device = pc.if_else(second, devices.second.take(u_idx), devices.first.take(u_idx))
        identified = later & (time_ms >= devices.link_ms[u])
        anonymous = later & ~identified if identity.linked else later
        device_ids = _concat("$device:", device)
        frags["$device_id"] = pc.if_else(
            pa.array(later), _quoted("$device_id", device), pa.scalar(None, pa.string())
        )
        frags["$user_id"] = pc.if_else(
            pa.array(anonymous),
            pa.scalar(None, pa.string()),
            pc.if_else(pa.array(users.has_user_id[u] | later), _quoted("$user_id", ids), user_ids),
        )
        ids = pc.if_else(pa.array(anonymous), device_ids, ids)
        if identity.linked:
            links = pa.array(identified)
            link_source = pc.if_else(links, device_ids, pa.scalar(None, pa.string()))
            link_target = pc.if_else(links, ids, pa.scalar(None, pa.string()))

    # Per-event properties.
    frags["$insert_id"] = _quoted("$insert_id", _fixed_strings(_LETTERS[rng.integers(0, 52, (n, 36))]))
    page = rng.integers(0, 2000, n)
    urls = pa.array([f"https://example.com/{PATHS[i % len(PATHS)] or 'home'}/{i}" for i in range(2000)])
    frags["$current_url"] = _quoted("$current_url", urls.take(pa.array(page.astype(np.int32))))
    ref = rng.integers(0, len(REFERRERS) + 3, n)
    ref_values: list[object] = [*REFERRERS, None, None, None]
    frags["$referrer"] = _pool("$referrer", ref_values, ref)
    frags["$mp_api_endpoint"] = _pool("$mp_api_endpoint", ["api.mixpanel.com"], np.zeros(n, np.int32))
    api_ms = time_ms + rng.integers(50, 5000, n)
    frags["$mp_api_timestamp_ms"] = _number("$mp_api_timestamp_ms", api_ms)
    frags["mp_processing_time_ms"] = _number("mp_processing_time_ms", api_ms + rng.integers(20, 900, n))
    frags["$import"] = _pool("$import", [True], np.zeros(n, np.int32))
    frags["duration_ms"] = _number("duration_ms", rng.integers(0, 120_000, n))
    frags["scroll_depth"] = _number("scroll_depth", np.round(rng.random(n) * 100, 1))
    frags["is_first_visit"] = _pool("is_first_visit", [False, True], (rng.random(n) < 0.1).astype(int))
    frags["ab_variant"] = _pool("ab_variant", ["control", "A", "B"], rng.integers(0, 3, n))

    # Optional groups: commerce, search, lists, nested objects.
    frags["price"] = _number("price", np.round(rng.gamma(2.0, 25.0, n), 2), commerce)
    frags["quantity"] = _number("quantity", rng.integers(1, 6, n), commerce)
    frags["currency"] = _pool("currency", ["USD", "EUR", "GBP"], rng.integers(0, 3, n), commerce)
    frags["product_id"] = _number("product_id", rng.integers(10_000, 99_999, n), commerce)
    skus = [[f"sku-{a}", f"sku-{b}"] for a, b in zip(range(100, 400), range(900, 1200), strict=True)]
    frags["items"] = _pool("items", list(skus), rng.integers(0, len(skus), n), commerce)
    frags["coupon"] = _pool("coupon", [None, "SAVE10", "WELCOME"], rng.integers(0, 3, n), commerce)
    frags["query"] = _pool("query", [f"search term {i}" for i in range(500)], rng.integers(0, 500, n), search)
    frags["results_count"] = _number("results_count", rng.integers(0, 300, n), search)
    tags = [[TAGS[i % 9], TAGS[(i * 7 + 3) % 9]][: 1 + i % 2] for i in range(81)]
    frags["tags"] = _pool("tags", list(tags), rng.integers(0, len(tags), n), rng.random(n) < 0.3)
    flags = [[f"flag_{i}", f"flag_{i + 1}", f"flag_{i + 2}"] for i in range(20)]
    frags["feature_flags"] = _pool("feature_flags", list(flags), rng.integers(0, 20, n), rng.random(n) < 0.25)
    utms = [
        {"campaign": f"campaign-{c}", "medium": m, "source": s}
        for s in UTM_SOURCES
        for m in UTM_MEDIUMS
        for c in range(4)
    ]
    frags["utm"] = _pool("utm", list(utms), rng.integers(0, len(utms), n), rng.random(n) < 0.08)
    frags["$had_persisted_distinct_id"] = _pool(
        "$had_persisted_distinct_id", [False, True], rng.integers(0, 2, n), rng.random(n) < 0.4
    )

    keys = sorted(frags)
    props = pc.binary_join_element_wise(*[frags[k] for k in keys], ",", null_handling="skip")
    client_props = pc.binary_join_element_wise(
        *[frags[k] for k in keys if k not in SERVER_KEYS], ",", null_handling="skip"
    )
    names = pa.array([orjson.dumps(e).decode() for e in EVENT_NAMES]).take(pa.array(ev.astype(np.int32)))
    head = _concat('{"event":', names, ',"properties":{"time":')
    time_pos = pc.utf8_length(head)
    did = _concat(',"distinct_id":"', ids, '",')
    line = _concat(head, pc.cast(pa.array(time_ms // 1000), pa.string()), did, props, "}}\n")
    body = _concat(head, pc.cast(pa.array(time_ms), pa.string()), did, client_props, "}}")
    return Chunk(
        time_ms=pa.array(time_ms),
        event=pa.array(EVENT_NAMES).take(pa.array(ev.astype(np.int32))),
        distinct_id=ids,
        insert_id=pc.utf8_slice_codeunits(frags["$insert_id"], 14, 50),
        time_pos=pc.cast(time_pos, pa.int32()),
        line=line,
        body=body,
        link_source=link_source,
        link_target=link_target,
    )
