"""Seeded, deterministic corpora for the PII accuracy harness (tests/test_pii_accuracy.py, bench/bench_pii.py).

``labelled_corpus()``: prompts (code, logs, e-mails, CSV and markdown tables, JSON, .env files) carrying values of
all twelve entity types with their spans. Values come from Faker in its real output formats (phones from eight
locales, cards of every type Faker knows, IBANs of six countries, SSNs, ABA numbers, IPs) and from our own
generators for what Faker lacks (NINO, NHS with a valid mod-11 digit, every secret format, PEM keys, Mastercard
2-series / UnionPay / Mir cards, global IPv6).

``clean_corpus()``: prompts of the same shapes with look-alikes only -- order numbers, timestamps and epochs,
version strings, UUIDs, hashes and git SHAs, base64 blobs, phone-like ids, numbers failing their checksum,
placeholders such as ``sk-...``, loopback/private/documentation IPs and the allow-listed test values.

Formats in and out of scope are listed in docs/pii.md ("Accuracy").
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from faker import Faker

__all__ = ["ENTITY_TYPES", "LabelledPrompt", "clean_corpus", "labelled_corpus"]

ENTITY_TYPES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "US_BANK_ROUTING",
    "UK_NINO",
    "UK_NHS",
    "API_KEY",
    "AWS_ACCESS_KEY",
    "PRIVATE_KEY",
)
PHONE_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "en_CA")
IBAN_LOCALES = ("en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")
B62 = string.ascii_letters + string.digits
URLSAFE = B62 + "-_"


@dataclass
class LabelledPrompt:
    text: str
    spans: list[tuple[str, int, int]] = field(default_factory=list)  # (entity_type, start, end)


@dataclass
class _Item:
    entity: str | None  # None for a look-alike in the clean corpus
    value: str
    label: str  # the words a person would write before it ("" = none)
    key: str  # a field/column/variable name for structured templates


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.spans: list[tuple[str, int, int]] = []

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.size += len(s)

    def item(self, it: _Item, quote: str = "") -> None:
        self.add(quote)
        if it.entity is not None:
            self.spans.append((it.entity, self.size, self.size + len(it.value)))
        self.add(it.value)
        self.add(quote)

    def done(self) -> LabelledPrompt:
        return LabelledPrompt("".join(self.parts), self.spans)


# --- value generators -----------------------------------------------------------------------------------


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch)
            if i % 2 == 1:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def _group_card(rng: random.Random, digits: str) -> str:
    style = rng.random()
    if style < 0.4:
        return digits
    sep = " " if style < 0.8 else "-"
    if len(digits) == 15 and digits[:2] in ("34", "37"):
        return sep.join((digits[:4], digits[4:10], digits[10:]))
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def card(rng: random.Random, fake: Faker) -> str:
    kinds = ("visa13", "visa16", "visa19", "mastercard", "amex", "discover", "diners", "jcb15", "jcb16", "maestro")
    pick = rng.random()
    if pick < 0.7:
        digits = fake.credit_card_number(card_type=rng.choice(kinds))
    elif pick < 0.8:
        digits = _luhn_complete(rng, str(rng.randint(2221, 2720)), 16)  # Mastercard 2-series
    elif pick < 0.9:
        digits = _luhn_complete(rng, "62" + str(rng.randint(10, 99)), rng.choice((16, 19)))  # UnionPay
    else:
        digits = _luhn_complete(rng, str(rng.randint(2200, 2204)), 16)  # Mir
    return _group_card(rng, digits)


def phone(rng: random.Random, fakes: dict[str, Faker]) -> str:
    locale = rng.choice(PHONE_LOCALES)
    f = fakes[locale]
    if locale == "en_GB" and rng.random() < 0.4:
        return str(f.cellphone_number())
    return str(f.phone_number())


def iban(rng: random.Random, fakes: dict[str, Faker]) -> str:
    value = str(fakes[rng.choice(IBAN_LOCALES)].iban())
    if rng.random() < 0.5:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def ssn(rng: random.Random, fake: Faker) -> tuple[str, bool]:
    """(value, needs_label): bare 9-digit SSNs are only SSNs when labelled."""
    value = str(fake.ssn())
    style = rng.random()
    if style < 0.7:
        return value, False
    if style < 0.85:
        return value.replace("-", " "), False
    return value.replace("-", ""), True


def routing(rng: random.Random, fake: Faker) -> str:
    return str(fake.aba())


_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"
_BAD_NINO = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ", "OO", "FY", "NC", "PP"}


def nino(rng: random.Random) -> str:
    while True:
        prefix = rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)
        if prefix not in _BAD_NINO:
            break
    digits = _rand(rng, string.digits, 6)
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{prefix}{digits}{suffix}"


def nhs_digits(rng: random.Random) -> str:
    """A valid NHS number (NHS Data Dictionary: weights 10..2, check = 11 - sum mod 11, 10 invalid)."""
    while True:
        first = rng.choice("4679")
        body = first + _rand(rng, string.digits, 8)
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return body + str(check)


def nhs(rng: random.Random) -> tuple[str, bool]:
    d = nhs_digits(rng)
    style = rng.random()
    if style < 0.6:
        return f"{d[:3]} {d[3:6]} {d[6:]}", False
    if style < 0.8:
        return d, True
    return f"{d[:3]}-{d[3:6]}-{d[6:]}", True


def _github_token(rng: random.Random, prefix: str) -> str:
    body = _rand(rng, B62, 30)
    crc = zlib.crc32(body.encode())
    tail = ""
    while crc:
        crc, r = divmod(crc, 62)
        tail = B62[r] + tail
    return prefix + body + tail.rjust(6, "0")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(rng: random.Random, fake: Faker) -> str:
    header = {"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    if rng.random() < 0.3:
        header["kid"] = _rand(rng, B62, 12)
    payload = {"sub": str(fake.uuid4()), "iat": rng.randint(1_600_000_000, 1_800_000_000), "name": fake.name()}
    sig = bytes(rng.getrandbits(8) for _ in range(32 if header["alg"] == "HS256" else 64))
    sep = (",", ":") if rng.random() < 0.7 else (", ", ": ")
    return ".".join(
        (_b64url(json.dumps(header, separators=sep).encode()), _b64url(json.dumps(payload).encode()), _b64url(sig))
    )


def api_key(rng: random.Random, fake: Faker) -> str:
    kind = rng.randrange(12)
    if kind == 0:
        return "sk-" + _rand(rng, B62, 20) + "T3BlbkFJ" + _rand(rng, B62, 20)
    if kind == 1:
        return "sk-proj-" + _rand(rng, URLSAFE, 156)
    if kind == 2:
        return "sk-ant-api03-" + _rand(rng, URLSAFE, 93) + "AA"
    if kind == 3:
        return _github_token(rng, rng.choice(("ghp_", "gho_", "ghs_", "ghu_")))
    if kind == 4:
        return "github_pat_" + _rand(rng, B62, 22) + "_" + _rand(rng, B62, 59)
    if kind == 5:
        return f"xox{rng.choice('bp')}-{rng.randint(10**10, 10**13)}-{rng.randint(10**10, 10**13)}-" + _rand(
            rng, B62, 24
        )
    if kind == 6:
        return rng.choice(("sk_live_", "rk_live_")) + _rand(rng, B62, rng.choice((24, 99)))
    if kind == 7:
        return "AIza" + _rand(rng, URLSAFE, 35)
    if kind == 8:
        return "sk-svcacct-" + _rand(rng, URLSAFE, 120)
    return jwt(rng, fake)


def aws_key(rng: random.Random) -> tuple[str, str]:
    """(value, label). One in four is the secret access key, which is only recognisable after its name."""
    if rng.random() < 0.25:
        return _rand(rng, B62 + "/+", 40), rng.choice(
            ("aws_secret_access_key = ", "AWS_SECRET_ACCESS_KEY=", '"SecretAccessKey": "', "aws_secret_key: ")
        )
    return rng.choice(("AKIA", "ASIA")) + _rand(rng, string.ascii_uppercase + "234567", 16), ""


def pem(rng: random.Random, escaped: bool) -> str:
    kind = rng.choice(
        ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY")
    )
    body = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(rng.choice((121, 240, 600))))).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    nl = "\\n" if escaped else "\n"
    return f"-----BEGIN {kind}-----{nl}" + nl.join(lines) + f"{nl}-----END {kind}-----"


def ip(rng: random.Random, fake: Faker) -> str:
    pick = rng.random()
    if pick < 0.6:
        return str(fake.ipv4_public())
    if pick < 0.8:
        return str(fake.ipv6())
    groups = [f"{rng.randint(0x2000, 0x3FFF):x}"] + [f"{rng.randint(0, 0xFFFF):x}" for _ in range(7)]
    if rng.random() < 0.5:
        return ":".join(groups[:3]) + "::" + groups[7]  # compressed global unicast
    return ":".join(groups)


def email(rng: random.Random, fakes: dict[str, Faker]) -> str:
    f = fakes[rng.choice(("en_US", "en_GB", "de_DE", "fr_FR"))]
    return str(rng.choice((f.free_email, f.company_email))())


# --- labels and structured keys -------------------------------------------------------------------------

_LABELS: dict[str, tuple[tuple[str, str], ...]] = {  # (prose label, structured key)
    "EMAIL_ADDRESS": (("email ", "email"), ("contact: ", "contact_email"), ("reach me at ", "mail")),
    "PHONE_NUMBER": (("phone: ", "phone"), ("call me on ", "mobile"), ("tel. ", "tel"), ("Mobile: ", "cell")),
    "CREDIT_CARD": (("card number ", "card_number"), ("Visa ", "pan"), ("card: ", "cc")),
    "IBAN_CODE": (("IBAN ", "iban"), ("pay to account ", "account")),
    "US_SSN": (("SSN ", "ssn"), ("social security number: ", "social_security_number")),
    "IP_ADDRESS": (("from IP ", "ip"), ("client ", "remote_addr"), ("host ", "address")),
    "US_BANK_ROUTING": (("routing number ", "routing_number"), ("ABA ", "aba"), ("RTN: ", "bank_routing")),
    "UK_NINO": (("NI number ", "ni_number"), ("National Insurance no. ", "nino")),
    "UK_NHS": (("NHS number ", "nhs_number"), ("NHS No: ", "nhs_no")),
    "API_KEY": (("token ", "api_key"), ("key: ", "OPENAI_API_KEY"), ("Authorization: Bearer ", "token")),
    "AWS_ACCESS_KEY": (("access key ", "aws_access_key_id"), ("AWS key ", "AccessKeyId")),
    "PRIVATE_KEY": (("key:\n", "private_key"), ("", "ssh_key")),
}
# How often a value comes with its label. Labels are how people write these (a bare NHS or routing number in a
# prompt is rare), but recall is also measured on bare values where the format itself is recognisable.
_LABEL_RATE = {"PHONE_NUMBER": 0.7, "US_BANK_ROUTING": 1.0}
_DEFAULT_LABEL_RATE = 0.5


def _make_item(entity: str, rng: random.Random, fake: Faker, fakes: dict[str, Faker]) -> _Item:
    label, key = rng.choice(_LABELS[entity])
    force_label = False
    forced_label = ""
    if entity == "EMAIL_ADDRESS":
        value = email(rng, fakes)
    elif entity == "PHONE_NUMBER":
        value = phone(rng, fakes)
    elif entity == "CREDIT_CARD":
        value = card(rng, fake)
    elif entity == "IBAN_CODE":
        value = iban(rng, fakes)
    elif entity == "US_SSN":
        value, force_label = ssn(rng, fake)
    elif entity == "IP_ADDRESS":
        value = ip(rng, fake)
    elif entity == "US_BANK_ROUTING":
        value = routing(rng, fake)
    elif entity == "UK_NINO":
        value = nino(rng)
    elif entity == "UK_NHS":
        value, force_label = nhs(rng)
    elif entity == "API_KEY":
        value = api_key(rng, fake)
    elif entity == "AWS_ACCESS_KEY":
        value, forced_label = aws_key(rng)
    else:
        value = pem(rng, escaped=rng.random() < 0.3)
    if forced_label:
        return _Item(entity, value, forced_label, forced_label.strip(" =:\"'"))
    labelled = force_label or rng.random() < _LABEL_RATE.get(entity, _DEFAULT_LABEL_RATE)
    if not labelled:
        label, key = "", rng.choice(("value", "field", "note", "ref", "data"))
    return _Item(entity, value, label, key)


# --- prompt templates -----------------------------------------------------------------------------------

Template = Callable[[list[_Item], random.Random, Faker], LabelledPrompt]


def _t_email(items: list[_Item], rng: random.Random, fake: Faker) -> LabelledPrompt:
    b = _Builder()
    b.add(f"Can you rewrite this e-mail so it sounds friendlier?\n\nHi {fake.first_name()},\n\n{fake.sentence()} ")
    for it in items:
        b.add(f"{fake.sentence(nb_words=6)[:-1]}, {it.label}")
        b.item(it)
        b.add(". ")
    b.add(f"\n\n{fake.paragraph(nb_sentences=2)}\n\nBest,\n{fake.name()}")
    return b.done()


# Timestamps are drawn before this fixed date, not before "now": the corpus (and so the accuracy figures in
# docs/pii.md) must be the same on every run and every machine.
_REFERENCE_TIME = datetime(2026, 12, 1, tzinfo=UTC)


def _fixed_time_between(fake: Faker, years: int) -> datetime:
    """A naive UTC datetime in the ``years`` before ``_REFERENCE_TIME`` (seeded by ``fake``; no wall clock)."""
    start = _REFERENCE_TIME - timedelta(days=365 * years)
    return fake.date_time_between(start, _REFERENCE_TIME, tzinfo=UTC).replace(tzinfo=None)


def _t_log(items: list[_Item], rng: random.Random, fake: Faker) -> LabelledPrompt:
    b = _Builder()
    b.add("Why does this job fail? Logs below.\n```\n")
    for it in items:
        ts = _fixed_time_between(fake, years=1).isoformat()
        b.add(f"{ts}Z {rng.choice(('INFO', 'WARN', 'ERROR'))} worker-{rng.randint(1, 9)} {fake.word()} ")
        b.add(f"{it.key}=" if it.label else f"{it.label}")
        b.item(it, quote='"' if "\n" in it.value else "")
        b.add(f" latency_ms={rng.randint(1, 900)}\n")
    b.add("```")
    return b.done()


def _t_json(items: list[_Item], rng: random.Random, fake: Faker) -> LabelledPrompt:
    b = _Builder()
    b.add(f'Validate this payload against the schema:\n{{\n  "id": "{fake.uuid4()}",\n  "name": "{fake.name()}",\n')
    for i, it in enumerate(items):
        key = it.key if it.label else f"{it.key}{i}"
        b.add(f'  "{key}": ')
        b.item(_Item(it.entity, it.value.replace("\n", "\\n"), it.label, it.key), quote='"')
        b.add(",\n")
    b.add(f'  "created": "{_fixed_time_between(fake, years=50).isoformat()}"\n}}')
    return b.done()


def _t_csv(items: list[_Item], rng: random.Random, fake: Faker) -> LabelledPrompt:
    flat = [it for it in items if "\n" not in it.value]
    if not flat:
        return _t_email(items, rng, fake)
    b = _Builder()
    b.add("Turn this CSV into a markdown table:\n")
    b.add("name," + ",".join(it.key for it in flat) + ",created\n")
    b.add(f"{fake.name()},")
    for it in flat:
        b.item(it, quote='"' if "," in it.value else "")
        b.add(",")
    b.add(f"{_fixed_time_between(fake, years=50).date().isoformat()}\n")
    return b.done()


def _t_markdown(items: list[_Item], rng: random.Random, fake: Faker) -> LabelledPrompt:
    flat = [it for it in items if "\n" not in it.value]
    if not flat:
        return _t_code(items, rng, fake)
    b = _Builder()
    b.add("Summarise the table:\n\n| Name | " + " | ".join(it.key for it in flat) + " |\n")
    b.add("|---" * (len(flat) + 1) + "|\n")
    b.add(f"| {fake.name()} | ")
    for it in flat:
        b.item(it)
        b.add(" | ")
    b.add(f"\n\n{fake.sentence()}")
    return b.done()


def _t_code(items: list[_Item], rng: random.Random, fake: Faker) -> LabelledPrompt:
    b = _Builder()
    b.add("Refactor this into a dataclass:\n```python\nimport os\n\n")
    for i, it in enumerate(items):
        name = it.key.upper() if it.label else f"VALUE_{i}"
        if "\n" in it.value:
            b.add(f'{name} = """')
            b.item(it)
            b.add('"""\n')
        else:
            b.add(f"{name} = ")
            b.item(it, quote='"')
            b.add("\n")
    b.add(f"\ndef {fake.word()}_client():\n    return Client(timeout={rng.randint(1, 60)})\n```")
    return b.done()


def _t_env(items: list[_Item], rng: random.Random, fake: Faker) -> LabelledPrompt:
    b = _Builder()
    b.add("My .env is below; why does docker compose not pick it up?\n\n")
    for i, it in enumerate(items):
        if it.label and it.label.endswith(("= ", "=", ": ", '"')) and it.entity == "AWS_ACCESS_KEY":
            b.add(it.label)
        else:
            b.add(f"{it.key.upper() if it.label else f'SETTING_{i}'}=")
        b.item(_Item(it.entity, it.value.replace("\n", "\\n"), it.label, it.key))
        b.add("\n")
    b.add(f"COMPOSE_PROJECT_NAME={fake.word()}\n")
    return b.done()


_TEMPLATES: tuple[Template, ...] = (_t_email, _t_log, _t_json, _t_csv, _t_markdown, _t_code, _t_env)


def _fakes(seed: int) -> tuple[Faker, dict[str, Faker]]:
    # Sorted, not a set: set order follows PYTHONHASHSEED and would make the corpus differ between runs.
    fakes = {loc: Faker(loc) for loc in sorted({*PHONE_LOCALES, *IBAN_LOCALES})}
    for i, f in enumerate(fakes.values()):
        f.seed_instance(seed + i)
    fake = fakes["en_US"]
    return fake, fakes


def labelled_corpus(per_type: int = 220, seed: int = 5) -> list[LabelledPrompt]:
    """Prompts with 1-3 entities each until every type has ``per_type`` instances."""
    rng = random.Random(seed)
    fake, fakes = _fakes(seed)
    counts = dict.fromkeys(ENTITY_TYPES, 0)
    prompts: list[LabelledPrompt] = []
    while min(counts.values()) < per_type:
        wanted = [e for e in ENTITY_TYPES if counts[e] < per_type]
        entities = [rng.choice(wanted) for _ in range(rng.randint(1, 3))]
        items = [_make_item(e, rng, fake, fakes) for e in entities]
        template = rng.choice(_TEMPLATES)
        if any(it.entity == "AWS_ACCESS_KEY" and it.label for it in items):
            template = rng.choice((_t_env, _t_log, _t_email))
        prompt = template(items, rng, fake)
        for entity, _, _ in prompt.spans:
            counts[entity] += 1
        prompts.append(prompt)
    return prompts


# --- clean corpus: look-alikes only ---------------------------------------------------------------------


def _bad_luhn(rng: random.Random) -> str:
    good = _luhn_complete(rng, "4", 16)
    return good[:-1] + str((int(good[-1]) + rng.randint(1, 9)) % 10)


def _bad_iban(rng: random.Random, fakes: dict[str, Faker]) -> str:
    value = str(fakes[rng.choice(IBAN_LOCALES)].iban())
    check = (int(value[2:4]) + rng.randint(1, 90)) % 97 + 2
    return value[:2] + f"{check:02d}"[:2] + value[4:]


def _bad_aba(rng: random.Random) -> str:
    while True:
        d = rng.choice("0123") + _rand(rng, string.digits, 8)
        if sum(int(c) * w for c, w in zip(d, (3, 7, 1) * 3, strict=True)) % 10:
            return d


def _lookalike(rng: random.Random, fake: Faker, fakes: dict[str, Faker]) -> tuple[str, str]:
    """(label, value) of something that is *not* one of the twelve entities (or is allow-listed)."""
    kind = rng.randrange(34)
    ts = _fixed_time_between(fake, years=3)
    options: list[Callable[[], tuple[str, str]]] = [
        lambda: ("order ", f"#{rng.randint(100000, 99999999)}"),
        lambda: ("order number ", f"ORD-{rng.randint(2019, 2026)}-{rng.randint(0, 999999):06d}"),
        lambda: ("PO ", str(rng.randint(4500000000, 4599999999))),
        lambda: ("at ", ts.isoformat() + "Z"),
        lambda: ("epoch ", str(int(ts.replace(tzinfo=UTC).timestamp()))),
        lambda: ("ts_ms=", str(int(ts.replace(tzinfo=UTC).timestamp() * 1000))),
        lambda: ("version ", f"{rng.randint(0, 20)}.{rng.randint(0, 40)}.{rng.randint(0, 200)}"),
        lambda: ("build ", f"10.0.{rng.randint(10000, 22999)}.{rng.randint(100, 4000)}"),
        lambda: (
            "pip install pkg==",
            f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}.post{rng.randint(1, 9)}",
        ),
        lambda: ("request_id=", str(uuid.UUID(int=rng.getrandbits(128)))),
        lambda: ("sha256 ", hashlib.sha256(str(rng.random()).encode()).hexdigest()),
        lambda: ("md5 ", hashlib.md5(str(rng.random()).encode()).hexdigest()),  # noqa: S324 - test data
        lambda: ("commit ", hashlib.sha1(str(rng.random()).encode()).hexdigest()[: rng.choice((7, 12, 40))]),  # noqa: S324
        lambda: ("blob ", base64.b64encode(bytes(rng.getrandbits(8) for _ in range(rng.randint(30, 120)))).decode()),
        lambda: ("ticket ", f"{rng.randint(2019, 2026)}-{rng.randint(1, 9999):04d}-{rng.randint(1, 99):02d}"),
        lambda: ("case ", f"{rng.randint(0, 99999):05d}-{rng.randint(0, 9999):04d}"),
        lambda: ("part ", f"PN {rng.randint(100, 999)}-{rng.randint(1000, 9999)}-{rng.randint(10, 99)}"),
        lambda: (
            "ISBN ",
            f"978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}",
        ),
        lambda: (
            "invoice total ",
            f"${rng.randint(1, 999)},{rng.randint(0, 999):03d},{rng.randint(0, 999):03d}.{rng.randint(0, 99):02d}",
        ),
        lambda: ("ref ", _bad_luhn(rng)),
        lambda: ("account ", _bad_iban(rng, fakes)),
        lambda: ("batch ", _bad_aba(rng)),
        lambda: ("localhost ", rng.choice(("127.0.0.1", "0.0.0.0", "::1", "127.0.0.1:8080", "localhost:5432"))),
        lambda: ("docs ip ", f"192.0.2.{rng.randint(1, 254)}"),
        lambda: ("private ", f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"),
        lambda: ("pod ", f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"),
        lambda: ("test card ", rng.choice(("4111 1111 1111 1111", "4242424242424242", "5555 5555 5555 4444"))),
        lambda: (
            "",
            rng.choice(
                (
                    "AKIAIOSFODNN7EXAMPLE",
                    "sk-...",
                    "sk-your-api-key-here",
                    "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                    "ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                    "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
                )
            ),
        ),
        lambda: ("mail ", f"{fake.user_name()}@example.{rng.choice(('com', 'org', 'net'))}"),
        lambda: ("fiction line ", f"({rng.randint(201, 989)}) 555-01{rng.randint(0, 99):02d}"),
        lambda: ("coords ", f"{rng.uniform(-90, 90):.6f}, {rng.uniform(-180, 180):.6f}"),
        lambda: ("resolution ", f"{rng.choice((1920, 2560, 3840))}x{rng.choice((1080, 1440, 2160))}"),
        lambda: ("mac ", ":".join(f"{rng.randint(0, 255):02x}" for _ in range(6))),
        lambda: ("std::", rng.choice(("vector<int>", "map<Add, add>", "string_view"))),
    ]
    return options[kind % len(options)]()


def clean_corpus(n: int = 1000, seed: int = 11) -> list[str]:
    """``n`` prompts in the same shapes as the labelled corpus, with 2-5 look-alikes each and no PII."""
    rng = random.Random(seed)
    fake, fakes = _fakes(seed)
    out: list[str] = []
    for _ in range(n):
        items = []
        for _ in range(rng.randint(2, 5)):
            label, value = _lookalike(rng, fake, fakes)
            items.append(_Item(None, value, label, label.strip(" :=#").replace(" ", "_") or "value"))
        out.append(rng.choice(_TEMPLATES)(items, rng, fake).text)
    return out
