"""The demo project's data: 30 days of a small shop's traffic with one story in it.

`serve --demo` on an empty data directory writes this into the demo project, through the same
ingest path `/import?strict=1` and `/engage` use (normalisation, identity rules, the store's
durable group commit), so what the explorer shows is what real clients would have produced:

- about 110,000 events over the 30 days ending now (UTC, the demo project's zone), with a daily
  and weekly rhythm: web (mp_lib `web`: `$browser`, `$current_url`, `$referrer`), iOS and
  Android (`$app_version_string`, `$model`), list and object properties (`items`, `cart`);
- about 3,000 people: some identified from their first event, some anonymous visitors who sign
  up later (their earlier `$device:` events then read as theirs), some who never do; profiles
  (`$name`, `$email`, `plan`, …) for the identified ones;
- late mobile events: a few percent of app events arrive hours after they happened;
- **the spike**: 10,000 events within one hour, nine days ago, from 3 people on 4 devices who
  all came from one campaign (`utm_campaign` = `spring-giveaway`), most of them sent anonymously
  before each device logged in. The explorer's top users in that hour are those 3 people.

Plain Python (`random`, seeded): the same call gives the same events relative to `now`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa

from rawevents import timeutil
from rawevents.ingest.events import EventContext, normalize_events
from rawevents.ingest.profiles import apply_update, parse_updates
from rawevents.projects import Project
from rawevents.storage.base import EventSelection, EventsPageQuery, EventStore

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
DAYS = 30
PEOPLE = 3_000
BACKGROUND_EVENTS = 100_000
CHUNK = 10_000  # events per store commit (of whole arrival hours)
SPIKE_DAYS_AGO = 9
SPIKE_HOUR = 14  # UTC, the demo project's zone
CAMPAIGN = "spring-giveaway"


@dataclass(frozen=True)
class SpikeDevice:
    device_id: str
    platform: str
    events: int
    login_minute: int  # minutes into the hour: earlier events are anonymous


@dataclass(frozen=True)
class SpikePerson:
    user_id: str
    name: str
    email: str
    city: tuple[str, str, str]
    devices: tuple[SpikeDevice, ...]

    @property
    def events(self) -> int:
        return sum(device.events for device in self.devices)


SPIKE_PEOPLE = (
    SpikePerson(
        "u_48213",
        "Dana Whitfield",
        "dana.whitfield@example.com",
        ("Leeds", "England", "GB"),
        (
            SpikeDevice("7c1e9a52-3b0d-4f6e-9a21-5d8e0c4b7f13", "ios", 2_900, 11),
            SpikeDevice("b4d2f6e8-91a3-4c57-8e0b-2a6f9d3c1e75", "web", 1_800, 23),
        ),
    ),
    SpikePerson(
        "u_51907",
        "Marek Nowak",
        "marek.nowak@example.com",
        ("Wrocław", "Lower Silesia", "PL"),
        (SpikeDevice("3f8a0c6d-2e71-4b9f-a5d4-8c0e7b1f2a69", "android", 3_100, 17),),
    ),
    SpikePerson(
        "u_60335",
        "Priya Raman",
        "priya.raman@example.com",
        ("Chennai", "Tamil Nadu", "IN"),
        (SpikeDevice("e95b7d21-6c4a-4f08-b3e2-1d7a9c5f0b84", "web", 2_200, 8),),
    ),
)

KINDS = (("known", 45), ("later", 30), ("anon", 25))
PLANS = (("free", 70), ("plus", 22), ("pro", 8))
PLATFORMS = (("web", 55), ("ios", 25), ("android", 20))
WEB_EVENTS = (
    ("Page View", 40),
    ("Product Viewed", 16),
    ("Search", 9),
    ("Add to Cart", 7),
    ("Checkout Started", 3),
    ("Purchase Completed", 2),
    ("Newsletter Signup", 1),
)
APP_EVENTS = (
    ("Screen View", 36),
    ("App Open", 14),
    ("Product Viewed", 16),
    ("Search", 7),
    ("Add to Cart", 7),
    ("Push Opened", 4),
    ("Checkout Started", 3),
    ("Purchase Completed", 2),
)
SPIKE_EVENTS = (("Coupon Redeemed", 55), ("Page View", 30), ("Add to Cart", 15))
BROWSERS = (("Chrome", 55), ("Safari", 22), ("Firefox", 9), ("Edge", 10), ("Opera", 4))
DESKTOP_OS = (("Windows", 55), ("Mac OS X", 35), ("Linux", 6), ("Chrome OS", 4))
IPHONES = ("iPhone13,2", "iPhone14,5", "iPhone15,2", "iPhone16,1", "iPad13,1")
ANDROIDS = ("Pixel 7", "Pixel 8", "SM-S911B", "SM-A546B", "moto g84", "2201116SG")
CITIES = (
    ("New York", "New York", "US", 9),
    ("San Francisco", "California", "US", 5),
    ("Chicago", "Illinois", "US", 4),
    ("Austin", "Texas", "US", 3),
    ("Toronto", "Ontario", "CA", 3),
    ("London", "England", "GB", 7),
    ("Leeds", "England", "GB", 1),
    ("Berlin", "Berlin", "DE", 4),
    ("München", "Bavaria", "DE", 2),
    ("Paris", "Île-de-France", "FR", 4),
    ("Madrid", "Madrid", "ES", 2),
    ("Amsterdam", "North Holland", "NL", 2),
    ("Warsaw", "Mazovia", "PL", 2),
    ("Wrocław", "Lower Silesia", "PL", 1),
    ("São Paulo", "São Paulo", "BR", 4),
    ("Mexico City", "Mexico City", "MX", 3),
    ("Bengaluru", "Karnataka", "IN", 4),
    ("Chennai", "Tamil Nadu", "IN", 2),
    ("Tokyo", "Tokyo", "JP", 3),
    ("Sydney", "New South Wales", "AU", 2),
)
CITY_WEIGHTS = tuple((city, city[3]) for city in CITIES)
PAGES = ("/", "/pricing", "/shop", "/shop/shoes", "/shop/bags", "/blog", "/help", "/cart", "/account")
REFERRERS = (
    ("$direct", 35),
    ("https://www.google.com/", 35),
    ("https://www.instagram.com/", 10),
    ("https://news.ycombinator.com/", 4),
    ("https://www.bing.com/", 6),
    ("https://duckduckgo.com/", 4),
    ("https://forum.coupons.example/", 6),
)
# (utm_source, utm_medium, utm_campaign, weight): how a person first arrived; None: no campaign
CAMPAIGNS = (
    (None, 60),
    (("google", "cpc", "brand-search"), 14),
    (("newsletter", "email", "weekly-digest"), 10),
    (("instagram", "social", "summer-lookbook"), 9),
    (("coupon-forum", "referral", CAMPAIGN), 4),
    (("partner", "affiliate", "partner-q3"), 3),
)
PRODUCTS = tuple(
    (f"SKU-{1000 + i}", name, price)
    for i, (name, price) in enumerate(
        (
            ("Trail Runner", 89.0),
            ("City Sneaker", 74.5),
            ("Canvas Tote", 24.0),
            ("Leather Backpack", 149.0),
            ("Wool Socks (3)", 18.0),
            ("Rain Jacket", 129.0),
            ("Running Cap", 22.0),
            ("Weekender Bag", 179.0),
        )
    )
)
SEARCHES = ("running shoes", "backpack", "rain jacket", "gift card", "socks", "sale", "tote bag")
FIRST: tuple[str, ...] = (
    "Alex",
    "Sam",
    "Jordan",
    "Maria",
    "Chen",
    "Aisha",
    "Lukas",
    "Sofia",
    "Mateo",
    "Yuki",
    "Noah",
    "Emma",
)
FIRST += ("Olga", "Ravi", "Zoe", "Liam", "Ines", "Kofi", "Hana", "Omar", "Lea", "Tomás", "Mia", "Arjun")
LAST: tuple[str, ...] = (
    "Smith",
    "Garcia",
    "Müller",
    "Rossi",
    "Kim",
    "Nguyen",
    "Silva",
    "Kowalski",
    "Dubois",
    "Sato",
)
LAST += ("Okafor", "Jensen", "Novak", "Haddad", "Patel", "Cohen", "Larsen", "Moreau", "Ito", "Byrne")


@dataclass(frozen=True)
class DemoData:
    """What was written, for the hint lines and tests."""

    events: int
    profiles: int
    seconds: float
    spike_start_ms: int
    spike_events: int


@dataclass
class _Person:
    user_id: str
    kind: str  # "known": identified from the start, "later": identifies at `identify_ms`, "anon"
    identify_ms: int
    platform: str
    devices: list[str]
    city: tuple[str, str, str, float]
    campaign: tuple[str, str, str] | None
    browser: str
    os: str
    model: str
    first_ms: int
    name: str = ""
    plan: str = "free"


class _Planned(NamedTuple):
    """One event before its properties are drawn; sorts by arrival (late events arrive later)."""

    arrival_ms: int
    seq: int
    time_ms: int
    person: int  # index into the people; -1 - k: spike person k
    device: int
    name: str


_TABLES: dict[int, tuple[list[Any], list[float]]] = {}


def _pick(rng: random.Random, pairs: tuple[tuple[Any, float], ...]) -> Any:
    """One value of `pairs` ((value, weight), …) drawn by weight."""
    table = _TABLES.get(id(pairs))
    if table is None:
        total = 0.0
        cumulative = []
        for _, weight in pairs:
            total += weight
            cumulative.append(total)
        table = _TABLES[id(pairs)] = ([value for value, _ in pairs], cumulative)
    values, cumulative = table
    return values[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def has_events(store: EventStore, project_id: int) -> bool:
    everything = [timeutil.TimeSegment(0, 2**62, 0)]
    return bool(store.events_page(EventsPageQuery(EventSelection(project_id, everything), limit=1)))


def spike_start_ms(now_ms: int) -> int:
    today = now_ms - now_ms % DAY_MS
    return today - SPIKE_DAYS_AGO * DAY_MS + SPIKE_HOUR * HOUR_MS


class _Generator:
    def __init__(self, now_ms: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now_ms = now_ms
        today = now_ms - now_ms % DAY_MS
        self.start_ms = today - (DAYS - 1) * DAY_MS
        self.spike_ms = spike_start_ms(now_ms)
        self.people = [self._person(i) for i in range(PEOPLE)]
        ranks = list(range(PEOPLE))
        self.rng.shuffle(ranks)
        self.weights = [1.0 / (r + 15) for r in ranks]  # a few busy people, a long tail

    def _person(self, index: int) -> _Person:
        rng = self.rng
        platform = _pick(rng, PLATFORMS)
        kind = _pick(rng, KINDS)
        # Most people are around from the start, the others arrive over the 30 days.
        first_ms = (
            self.start_ms if rng.random() < 0.6 else self.start_ms + int(rng.random() * (DAYS - 1) * DAY_MS)
        )
        span = max(HOUR_MS, self.now_ms - first_ms)
        devices = [_uuid(rng)] + ([_uuid(rng)] if rng.random() < 0.3 else [])
        return _Person(
            user_id=f"u_{10000 + index * 7 + rng.randrange(7)}",
            kind=kind,
            identify_ms=first_ms + int(rng.random() * span),
            platform=platform,
            devices=devices,
            city=_pick(rng, CITY_WEIGHTS),
            campaign=_pick(rng, CAMPAIGNS),
            browser=_pick(rng, BROWSERS),
            os=_pick(rng, DESKTOP_OS),
            model=rng.choice(IPHONES if platform == "ios" else ANDROIDS),
            first_ms=first_ms,
            name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            plan=_pick(rng, PLANS),
        )

    def _hour_weight(self, hour_ms: int) -> float:
        moment = dt.datetime.fromtimestamp(hour_ms / 1000, dt.UTC)
        daily = 0.25 + math.pow(max(0.0, 1 - abs(moment.hour - 16) / 9), 1.5)
        weekly = 0.75 if moment.weekday() >= 5 else 1.0
        growth = 0.85 + 0.3 * (hour_ms - self.start_ms) / (DAYS * DAY_MS)
        return daily * weekly * growth

    def plan(self) -> list[_Planned]:
        rng = self.rng
        hours = list(range(self.start_ms, self.now_ms - HOUR_MS, HOUR_MS))
        hour_weights = [self._hour_weight(h) for h in hours]
        planned: list[_Planned] = []
        starts = rng.choices(hours, weights=hour_weights, k=BACKGROUND_EVENTS)
        people = rng.choices(range(PEOPLE), weights=self.weights, k=BACKGROUND_EVENTS)
        for seq, (hour, index) in enumerate(zip(starts, people, strict=True)):
            person = self.people[index]
            time_ms = hour + rng.randrange(HOUR_MS)
            if time_ms < person.first_ms:  # not around yet: some time after their first visit
                time_ms = person.first_ms + rng.randrange(max(HOUR_MS, self.now_ms - person.first_ms))
            time_ms = min(time_ms, self.now_ms - 60_000)
            which = rng.randrange(len(person.devices))
            events = WEB_EVENTS if person.platform == "web" else APP_EVENTS
            arrival = time_ms
            if person.platform != "web" and rng.random() < 0.04:  # an offline queue sent later
                arrival = min(self.now_ms, time_ms + rng.randrange(HOUR_MS, 36 * HOUR_MS))
            planned.append(_Planned(arrival, seq, time_ms, index, which, _pick(rng, events)))
        seq = len(planned)
        for k, spiker in enumerate(SPIKE_PEOPLE):
            for d, device in enumerate(spiker.devices):
                for _ in range(device.events):
                    time_ms = self.spike_ms + rng.randrange(3 * 60_000, 57 * 60_000)
                    name = _pick(rng, SPIKE_EVENTS)
                    if device.platform != "web" and name == "Page View":
                        name = "Screen View"
                    planned.append(_Planned(time_ms, seq, time_ms, -1 - k, d, name))
                    seq += 1
        planned.sort()
        return planned

    def events(self, planned: list[_Planned]) -> Iterator[dict[str, Any]]:
        for item in planned:
            if item.person >= 0:
                yield self._background(item)
            else:
                yield self._spike(item)

    def _background(self, item: _Planned) -> dict[str, Any]:
        rng = self.rng
        person = self.people[item.person]
        device = person.devices[item.device]
        props: dict[str, Any] = {"time": item.time_ms, "$insert_id": f"demo-{item.seq:07d}"}
        identified = person.kind == "known" or (person.kind == "later" and item.time_ms >= person.identify_ms)
        name = item.name
        if person.kind == "later" and identified and item.time_ms - person.identify_ms < 120_000:
            name = "Sign Up"
        props["distinct_id"] = person.user_id if identified else f"$device:{device}"
        props["$device_id"] = device
        if identified:
            props["$user_id"] = person.user_id
        city, region, country, _ = person.city
        props.update({"$city": city, "$region": region, "mp_country_code": country})
        if person.platform == "web":
            page = rng.choice(PAGES)
            props.update(
                {
                    "mp_lib": "web",
                    "$lib_version": "2.55.1",
                    "$browser": person.browser,
                    "$os": person.os,
                    "$current_url": f"https://shop.example.com{page}",
                    "$referrer": _pick(rng, REFERRERS),
                    "$screen_width": rng.choice((1280, 1440, 1536, 1920, 2560)),
                }
            )
        else:
            ios = person.platform == "ios"
            props.update(
                {
                    "mp_lib": "iphone" if ios else "android",
                    "$lib_version": "4.2.0" if ios else "7.5.2",
                    "$os": "iOS" if ios else "Android",
                    "$model": person.model,
                    "$app_version_string": rng.choice(("3.8.0", "3.9.1", "3.9.2")),
                    "$wifi": rng.random() < 0.6,
                }
            )
        if person.campaign is not None and rng.random() < 0.35:
            source, medium, campaign = person.campaign
            props.update({"utm_source": source, "utm_medium": medium, "utm_campaign": campaign})
        self._details(name, props)
        return {"event": name, "properties": props}

    def _details(self, name: str, props: dict[str, Any]) -> None:
        rng = self.rng
        if name in ("Product Viewed", "Add to Cart"):
            sku, title, price = rng.choice(PRODUCTS)
            props.update({"product_id": sku, "product_name": title, "price": price, "currency": "USD"})
        elif name in ("Checkout Started", "Purchase Completed"):
            picked = rng.sample(PRODUCTS, rng.randint(1, 3))
            props["items"] = [sku for sku, _, _ in picked]
            total = round(sum(price for _, _, price in picked), 2)
            props["cart"] = {"size": len(picked), "total": total, "currency": "USD"}
            if name == "Purchase Completed":
                props["revenue"] = total
        elif name == "Search":
            props["query"] = rng.choice(SEARCHES)
            props["results"] = rng.randrange(0, 60)

    def _spike(self, item: _Planned) -> dict[str, Any]:
        rng = self.rng
        spiker = SPIKE_PEOPLE[-1 - item.person]
        device = spiker.devices[item.device]
        identified = item.time_ms >= self.spike_ms + device.login_minute * 60_000
        props: dict[str, Any] = {
            "time": item.time_ms,
            "$insert_id": f"demo-{item.seq:07d}",
            "distinct_id": spiker.user_id if identified else f"$device:{device.device_id}",
            "$device_id": device.device_id,
            "$city": spiker.city[0],
            "$region": spiker.city[1],
            "mp_country_code": spiker.city[2],
            "utm_source": "coupon-forum",
            "utm_medium": "referral",
            "utm_campaign": CAMPAIGN,
        }
        if identified:
            props["$user_id"] = spiker.user_id
        if device.platform == "web":
            props.update({"mp_lib": "web", "$browser": "Chrome", "$os": "Windows", "$referrer": "$direct"})
            props["$current_url"] = "https://shop.example.com/redeem?utm_campaign=" + CAMPAIGN
        else:
            ios = device.platform == "ios"
            props.update(
                {
                    "mp_lib": "iphone" if ios else "android",
                    "$os": "iOS" if ios else "Android",
                    "$model": "iPhone15,2" if ios else "SM-A546B",
                    "$app_version_string": "3.9.2",
                }
            )
        if item.name == "Coupon Redeemed":
            props.update({"coupon": "GIVEAWAY25", "discount": 25, "currency": "USD"})
        elif item.name == "Add to Cart":
            sku, title, price = rng.choice(PRODUCTS)
            props.update({"product_id": sku, "product_name": title, "price": price, "currency": "USD"})
        return {"event": item.name, "properties": props}

    def profiles(self, token: str) -> list[dict[str, Any]]:
        rng = self.rng
        updates = []
        for person in self.people:
            if person.kind == "anon" or (person.kind == "later" and person.identify_ms > self.now_ms):
                continue
            first, last = person.name.split(" ", 1)
            handle = f"{first}.{last}".lower().replace(" ", "")
            props: dict[str, Any] = {
                "$name": person.name,
                "$email": f"{handle}{rng.randrange(100)}@example.com",
                "$city": person.city[0],
                "$country_code": person.city[2],
                "$created": _iso(max(person.first_ms, person.identify_ms if person.kind == "later" else 0)),
                "plan": person.plan,
            }
            if person.campaign is not None:
                props["acquisition_campaign"] = person.campaign[2]
            updates.append({"$token": token, "$distinct_id": person.user_id, "$set": props})
        for spiker in SPIKE_PEOPLE:
            props = {
                "$name": spiker.name,
                "$email": spiker.email,
                "$city": spiker.city[0],
                "$country_code": spiker.city[2],
                "$created": _iso(self.spike_ms + 5 * 60_000),
                "plan": "free",
                "acquisition_campaign": CAMPAIGN,
            }
            updates.append({"$token": token, "$distinct_id": spiker.user_id, "$set": props})
        return updates


def _iso(time_ms: int) -> str:
    return dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def populate(store: EventStore, project: Project, *, now_ms: int | None = None, seed: int = 24) -> DemoData:
    """Write the demo data into `project` through the ingest path; returns what was written."""
    began = time.monotonic()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    generator = _Generator(now_ms, seed)
    planned = generator.plan()
    written = 0
    pending = []
    tables: list[pa.Table] = []
    batch: list[dict[str, Any]] = []

    def normalize(arrival_hour: int) -> None:
        """The events that arrived within one hour, as one request of that hour would carry them."""
        nonlocal written
        received = min(now_ms, arrival_hour + HOUR_MS)
        ctx = EventContext(
            endpoint="import",
            strict=True,
            received_ms=received,
            processed_ms=max(now_ms, received),
            host="api.shop.example.com",
            ip_fallback=False,
            client_ip=None,
        )
        normalized = normalize_events(batch, ctx, project=project)
        if normalized.failed:
            raise RuntimeError(f"demo data refused: {normalized.failed[0].message}")
        tables.append(normalized.table())
        written += normalized.stored
        batch.clear()

    def commit() -> None:
        pending.append(store.submit_events(pa.concat_tables(tables)))
        tables.clear()

    hour = planned[0].arrival_ms - planned[0].arrival_ms % HOUR_MS
    rows = 0
    for item, event in zip(planned, generator.events(planned), strict=True):
        if item.arrival_ms >= hour + HOUR_MS:
            normalize(hour)
            hour = item.arrival_ms - item.arrival_ms % HOUR_MS
            if rows >= CHUNK:
                commit()
                rows = 0
        batch.append(event)
        rows += 1
    normalize(hour)
    commit()
    for future in pending:
        future.result()

    updates = parse_updates(
        generator.profiles(project.token), kind="user", now_ms=now_ms, resolve=lambda _token: project
    )
    profiles = 0
    for target, ops in updates.updates.values():
        store.submit_profile_updates(
            target.project.project_id, target.kind, target.group_key, ops, apply_update
        ).result()
        profiles += len({op.profile_id for op in ops})
    spike = sum(person.events for person in SPIKE_PEOPLE)
    return DemoData(written, profiles, time.monotonic() - began, generator.spike_ms, spike)


def hints(data: DemoData | None, explore_url: str, secret: str | None) -> list[str]:
    """The lines `serve --demo` prints once it listens: where to look and what to look for.
    `secret`: the project secret when it was just created (later only its digest exists)."""
    signin = (
        f"sign in with the project secret {secret}"
        if secret
        else "sign in with the demo project's secret (printed when it was created)"
    )
    lines = [f"rawevents demo: open {explore_url} and {signin}"]
    if data is None:
        return lines
    spike = dt.datetime.fromtimestamp(data.spike_start_ms / 1000, dt.UTC)
    people = len(SPIKE_PEOPLE)
    devices = sum(len(person.devices) for person in SPIKE_PEOPLE)
    return [
        f"rawevents demo: wrote {data.events:,} events of the last {DAYS} days and {data.profiles:,} profiles"
        f" in {data.seconds:.1f} s",
        *lines,
        f"rawevents demo: the story: on {spike:%Y-%m-%d} at {spike:%H}:00 UTC, {data.spike_events:,} events"
        f' in one hour came from {people} people on {devices} devices, all from utm_campaign "{CAMPAIGN}"',
        "rawevents demo: in the explorer, drag across that spike: the top users are those 3 people;"
        " click one for their timeline and profile",
    ]
