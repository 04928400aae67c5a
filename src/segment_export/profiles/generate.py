"""Realistic, deterministic sample profiles, built column-wise with numpy and Arrow."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from segment_export.errors import DataError
from segment_export.languages import N_
from segment_export.profiles.importer import detect_format

# (native, romanised) pairs: names appear in their own script, email addresses in ASCII.
_CYRILLIC_FIRST = [("Иван", "ivan"), ("Ольга", "olga"), ("Дмитрий", "dmitry"),
                   ("Наталья", "natalya"), ("Сергей", "sergey"), ("Анна", "anna"),
                   ("Алексей", "alexey"), ("Екатерина", "ekaterina")]
_CYRILLIC_LAST = [("Иванов", "ivanov"), ("Смирнова", "smirnova"), ("Кузнецов", "kuznetsov"),
                  ("Попова", "popova"), ("Соколов", "sokolov"), ("Лебедева", "lebedeva")]
_GREEK_FIRST = [("Γιώργος", "giorgos"), ("Μαρία", "maria"), ("Νίκος", "nikos"),
                ("Ελένη", "eleni"), ("Δημήτρης", "dimitris"), ("Σοφία", "sofia")]
_GREEK_LAST = [("Παπαδόπουλος", "papadopoulos"), ("Οικονόμου", "oikonomou"),
               ("Γεωργίου", "georgiou"), ("Παπαδάκη", "papadaki"), ("Βασιλείου", "vasileiou")]
_CJK_FIRST = [("陽翔", "haruto"), ("結衣", "yui"), ("伟", "wei"), ("芳", "fang"),
              ("秀英", "xiuying"), ("浩然", "haoran"), ("さくら", "sakura"), ("蓮", "ren")]
_CJK_LAST = [("佐藤", "sato"), ("鈴木", "suzuki"), ("王", "wang"), ("李", "li"),
             ("张", "zhang"), ("高橋", "takahashi"), ("田中", "tanaka"), ("陈", "chen")]
_ARABIC_FIRST = [("محمد", "mohamed"), ("فاطمة", "fatima"), ("أحمد", "ahmed"),
                 ("مريم", "mariam"), ("علي", "ali"), ("نور", "nour"), ("يوسف", "youssef")]
_ARABIC_LAST = [("حسن", "hassan"), ("عبدالله", "abdullah"), ("الخطيب", "alkhatib"),
                ("منصور", "mansour"), ("السيد", "elsayed"), ("إبراهيم", "ibrahim")]
_DEVANAGARI_FIRST = [("आरव", "aarav"), ("प्रिया", "priya"), ("विवान", "vivaan"),
                     ("अनन्या", "ananya"), ("राहुल", "rahul"), ("दीपिका", "deepika")]
_DEVANAGARI_LAST = [("शर्मा", "sharma"), ("वर्मा", "verma"), ("गुप्ता", "gupta"),
                    ("सिंह", "singh"), ("पटेल", "patel"), ("जोशी", "joshi")]
_LATIN_FIRST_NAMES = ["José", "María", "François", "Zoë", "Jürgen", "Søren", "Łukasz", "Ana",
                      "Émile", "Inês", "Björn", "Agnieszka", "Lucía", "Noël", "João", "Chloé",
                      "Renée", "Mateo", "Ömer", "Siobhán", "James", "Emma", "Oliver", "Sophie",
                      "Liam", "Olivia", "Noah", "Mia", "Lukas", "Hannah", "Pedro", "Camille"]
_LATIN_LAST_NAMES = ["García", "Müller", "Dubois", "Nowak", "Silva", "Smith", "Johnson",
                     "Brown", "O'Brien", "Schröder", "Fernández", "Lefèvre", "Kowalski",
                     "Sørensen", "Čapek", "Ibáñez", "Martin", "Rossi", "Weiß", "Jones",
                     "Williams", "Taylor", "Costa", "Nuñez", "Van der Berg", "Håkansson"]


def _ascii(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name.replace("ß", "ss").replace("Ł", "L")
                                   .replace("ł", "l").replace("ø", "o").replace("Ø", "O"))
    kept = "".join(c for c in folded if c.isascii() and (c.isalnum()))
    return kept.lower()


_LATIN_FIRST = [(n, _ascii(n)) for n in _LATIN_FIRST_NAMES]
_LATIN_LAST = [(n, _ascii(n)) for n in _LATIN_LAST_NAMES]

_SCRIPTS = {
    "latin": (_LATIN_FIRST, _LATIN_LAST),
    "cyrillic": (_CYRILLIC_FIRST, _CYRILLIC_LAST),
    "greek": (_GREEK_FIRST, _GREEK_LAST),
    "cjk": (_CJK_FIRST, _CJK_LAST),
    "arabic": (_ARABIC_FIRST, _ARABIC_LAST),
    "devanagari": (_DEVANAGARI_FIRST, _DEVANAGARI_LAST),
}
# country, weight, script, phone prefix, cities
_COUNTRIES = [
    ("US", 25, "latin", "+1", ["New York", "Chicago", "Austin", "Seattle"]),
    ("GB", 10, "latin", "+44", ["London", "Manchester", "Edinburgh"]),
    ("DE", 12, "latin", "+49", ["Berlin", "München", "Köln", "Hamburg"]),
    ("FR", 8, "latin", "+33", ["Paris", "Lyon", "Marseille"]),
    ("ES", 6, "latin", "+34", ["Madrid", "Barcelona", "Sevilla"]),
    ("BR", 6, "latin", "+55", ["São Paulo", "Rio de Janeiro", "Brasília"]),
    ("PL", 4, "latin", "+48", ["Warszawa", "Kraków", "Łódź"]),
    ("RU", 5, "cyrillic", "+7", ["Москва", "Санкт-Петербург", "Казань"]),
    ("BG", 2, "cyrillic", "+359", ["София", "Пловдив"]),
    ("GR", 3, "greek", "+30", ["Αθήνα", "Θεσσαλονίκη", "Πάτρα"]),
    ("JP", 5, "cjk", "+81", ["東京", "大阪", "京都"]),
    ("CN", 5, "cjk", "+86", ["北京", "上海", "深圳"]),
    ("EG", 3, "arabic", "+20", ["القاهرة", "الإسكندرية"]),
    ("AE", 2, "arabic", "+971", ["دبي", "أبوظبي"]),
    ("IN", 4, "devanagari", "+91", ["नई दिल्ली", "मुंबई", "जयपुर"]),
]
# Reserved example domains only: generated addresses must never reach a real mailbox.
_DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com",
            "post.example.org", "inbox.example.net"]
_COMPANIES = ["Acme GmbH", "Globex", "Initech", "Umbrella SA", "Müller & Söhne", "Stark Ltd",
              "株式会社サンプル", "ООО Ромашка", "Wayne Enterprises", "Soylent", "Hooli"]
_JOBS = ["Marketing Manager", "Engineer", "Teacher", "Nurse", "Designer", "Accountant",
         "Sales Director", "Student", "Consultant", "Chef", "Analyst"]
TIERS = ("bronze", "silver", "gold", "platinum")
_TIER_BOUNDS = np.array([100.0, 500.0, 2000.0])

# Shares of the deliberately bad email addresses the export must cope with.
MISSING_EMAIL = 0.02
INVALID_EMAIL = 0.03
LONG_EMAIL = 0.005
CASE_DUPLICATE_EMAIL = 0.01
LATIN_ABROAD = 0.15  # share of non-Latin-country rows that still carry Latin-script names


def generate_profiles(*, rows: int, seed: int = 42, as_of: date | None = None) -> pa.Table:
    """A table of ``rows`` unified profiles, identical for the same ``seed`` and ``as_of``.

    ``as_of`` (default: today, UTC) anchors signup and purchase dates so that relative-date
    segments find members. Customer ids are the integers 1..rows, so they sort.
    """
    if rows < 0:
        raise DataError(N_("rows must be zero or more"), field="rows")
    as_of = as_of or datetime.now(UTC).date()
    rng = np.random.default_rng(seed)
    n = rows
    ids = np.arange(1, n + 1, dtype=np.int64)

    weights = np.array([c[1] for c in _COUNTRIES], dtype=np.float64)
    country_idx = rng.choice(len(_COUNTRIES), size=n, p=weights / weights.sum())
    country = pc.take(pa.array([c[0] for c in _COUNTRIES]), country_idx)
    city = _city(rng, country_idx)
    phone = _phone(rng, country_idx)

    script_names = list(_SCRIPTS)
    script_of_country = np.array([script_names.index(c[2]) for c in _COUNTRIES])
    script = script_of_country[country_idx]
    script = np.where(rng.random(n) < LATIN_ABROAD, 0, script)
    first, first_ascii = _names(rng, script, script_names, 0)
    last, last_ascii = _names(rng, script, script_names, 1)

    email = _emails(rng, n, ids, first_ascii, last_ascii)

    signup_days = rng.integers(0, 8 * 365, size=n)
    today = np.datetime64(as_of, "D")
    signup = today - signup_days.astype("timedelta64[D]")
    since = (rng.random(n) * (signup_days + 1)).astype(np.int64)
    last_purchase = signup + since.astype("timedelta64[D]")
    never_bought = rng.random(n) < 0.15
    ltv = np.round(rng.lognormal(mean=4.8, sigma=1.3, size=n), 2)
    ltv = np.where(never_bought, 0.0, ltv)
    tier = pc.take(pa.array(TIERS), np.searchsorted(_TIER_BOUNDS, ltv, side="right"))

    company = pc.take(pa.array(_COMPANIES), rng.integers(0, len(_COMPANIES), size=n))
    company = pc.if_else(pa.array(rng.random(n) < 0.4), company, pa.nulls(n, pa.string()))
    job = pc.take(pa.array(_JOBS), rng.integers(0, len(_JOBS), size=n))
    job = pc.if_else(pa.array(rng.random(n) < 0.6), job, pa.nulls(n, pa.string()))

    return pa.table({
        "customer_id": pa.array(ids),
        "email": email,
        "first_name": first,
        "last_name": last,
        "country": country,
        "city": city,
        "phone": phone,
        "lifetime_value": pa.array(ltv),
        "last_purchase_date": pa.array(last_purchase, type=pa.date32(), mask=never_bought),
        "signup_date": pa.array(signup, type=pa.date32()),
        "loyalty_tier": tier,
        "marketing_consent": pa.array(rng.random(n) < 0.88),
        "company": company,
        "job_title": job,
    })


def _names(
    rng: np.random.Generator, script: np.ndarray, script_names: list[str], part: int
) -> tuple[pa.Array, pa.Array]:
    # One flat pool of every script's names; each row draws within its own script's slice.
    pools = [_SCRIPTS[s][part] for s in script_names]
    offsets = np.cumsum([0] + [len(p) for p in pools])
    sizes = np.diff(offsets)
    flat = [pair for pool in pools for pair in pool]
    pick = offsets[script] + (rng.random(script.shape[0]) * sizes[script]).astype(np.int64)
    native = pc.take(pa.array([p[0] for p in flat]), pick)
    roman = pc.take(pa.array([p[1] for p in flat]), pick)
    return native, roman


def _city(rng: np.random.Generator, country_idx: np.ndarray) -> pa.Array:
    pools = [c[4] for c in _COUNTRIES]
    offsets = np.cumsum([0] + [len(p) for p in pools])
    sizes = np.diff(offsets)
    pick = offsets[country_idx] + (rng.random(country_idx.shape[0]) * sizes[country_idx]).astype(
        np.int64
    )
    return pc.take(pa.array([city for pool in pools for city in pool]), pick)


def _phone(rng: np.random.Generator, country_idx: np.ndarray) -> pa.Array:
    n = country_idx.shape[0]
    prefix = pc.take(pa.array([c[3] for c in _COUNTRIES]), country_idx)
    area = pc.cast(pa.array(rng.integers(20, 999, size=n)), pa.string())
    local = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10_000_000, size=n)), pa.string()),
                         width=7, padding="0")
    phone = pc.binary_join_element_wise(prefix, area, local, " ")
    return pc.if_else(pa.array(rng.random(n) < 0.05), pa.nulls(n, pa.string()), phone)


def _emails(
    rng: np.random.Generator, n: int, ids: np.ndarray, first: pa.Array, last: pa.Array
) -> pa.Array:
    sep = pc.take(pa.array([".", "_", ""]), rng.integers(0, 3, size=n))
    domain = pc.take(pa.array(_DOMAINS), rng.integers(0, len(_DOMAINS), size=n))
    number = pc.cast(pa.array(ids), pa.string())
    # The id in the local part keeps every well-formed address unique.
    local = pc.binary_join_element_wise(first, sep, last, number, "")
    good = pc.binary_join_element_wise(local, domain, "@")

    u = rng.random(n)
    cut1 = MISSING_EMAIL
    cut2 = cut1 + INVALID_EMAIL
    cut3 = cut2 + LONG_EMAIL
    cut4 = cut3 + CASE_DUPLICATE_EMAIL
    kind = np.select([u < cut1, u < cut2, u < cut3, u < cut4], [1, 2, 3, 4], default=0)

    # The bad addresses are built for their few rows only, then placed with one take.
    bad = np.flatnonzero(kind == 2)
    b_local, b_domain = pc.take(local, bad), pc.take(domain, bad)
    b_first, b_last = pc.take(first, bad), pc.take(last, bad)
    variants = [
        pc.binary_join_element_wise(b_local, b_domain, " at "),  # no @
        pc.binary_join_element_wise(b_local, b_domain, "@@"),
        pc.binary_join_element_wise(b_local, pc.replace_substring(b_domain, ".", ""), "@"),
        pc.binary_join_element_wise(b_first, b_last, b_domain, " "),  # spaces, no @
        pc.binary_join_element_wise(pc.take(good, bad), pa.scalar("."), ""),  # trailing dot
        pc.binary_join_element_wise(pa.scalar(""), b_domain, "@"),  # no local part
    ]
    which = rng.integers(0, len(variants), size=bad.size)
    invalid = pc.take(pa.concat_arrays(variants), which * bad.size + np.arange(bad.size))

    long_rows = np.flatnonzero(kind == 3)
    too_long = pc.binary_join_element_wise(
        pc.take(local, long_rows), pa.scalar("primary-contact-for-customer"),
        pc.take(domain, long_rows), "."
    )
    too_long = pc.replace_substring(too_long, ".primary-contact-for-customer.",
                                    ".primary-contact-for-customer@", max_replacements=1)

    # Another row's well-formed address in other letter case: the same mailbox twice.
    dup_rows = np.flatnonzero(kind == 4)
    sources = np.flatnonzero(kind == 0)
    if sources.size:
        other = pc.take(good, sources[rng.integers(0, sources.size, size=dup_rows.size)])
    else:
        other = pc.take(good, dup_rows)
    shouted = pc.if_else(pa.array(rng.random(dup_rows.size) < 0.5), pc.utf8_upper(other),
                         pc.utf8_capitalize(other))

    position = np.arange(n, dtype=np.int64)
    offset = n
    for rows_of_kind in (bad, long_rows, dup_rows):
        position[rows_of_kind] = offset + np.arange(rows_of_kind.size)
        offset += rows_of_kind.size
    position[kind == 1] = offset  # the one null at the end
    pool = pa.concat_arrays([good, invalid, too_long, shouted, pa.nulls(1, pa.string())])
    return pc.take(pool, position)


def write_profiles(table: pa.Table, path: Path, *, format: str | None = None) -> Path:
    """Write profiles as CSV, Parquet or JSON Lines, chosen by ``format`` or the extension."""
    import duckdb
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    fmt = detect_format(path, format)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        pacsv.write_csv(table, path)
    elif fmt == "parquet":
        pq.write_table(table, path)
    else:
        # pyarrow has no JSON writer; DuckDB writes newline-delimited JSON by default.
        from sqlglot import exp

        with duckdb.connect() as conn:
            conn.register("profiles_out", table)
            target = exp.Literal.string(str(path)).sql(dialect="duckdb")
            conn.execute(f"COPY profiles_out TO {target} (FORMAT json)")
    return path
