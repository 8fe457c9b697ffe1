"""extract-json: a sentence about a person -> ``{"name", "age", "city"}`` as JSON.

The prompt does not spell out the schema: the keys, the age as a number, the name first-name-first
without a title, and the city the person lives in now are learned from the examples. Harder shapes
(age in words, a birthday tomorrow, surname first, a title, a second city, extra numbers) keep the
answer from being a copy of the sentence.
"""
from __future__ import annotations

import json
import random
from typing import Optional

from lorakit.data.tasks.date_iso import MONTHS

_FIRST = (
    "Maria", "James", "Aiko", "Omar", "Lena", "Carlos", "Priya", "Noah", "Fatima", "Lukas", "Sofia",
    "Daniel", "Yuki", "Amara", "Igor", "Chloe", "Mateo", "Hana", "Kofi", "Elena", "Ravi", "Nora",
    "Tomasz", "Grace", "Diego", "Ingrid", "Samuel", "Leila", "Arjun", "Zoe", "Felix", "Mei",
    "Hugo", "Ada", "Jonas", "Isabel", "Kenji", "Olga", "Tariq", "Emma", "Pablo", "Sara", "Ivan",
    "Lucia", "Ben", "Anya", "Marco", "Rosa", "Ahmed", "Julia", "Viktor", "Nadia", "Leo", "Clara",
)
_LAST = (
    "Lopez", "Smith", "Tanaka", "Haddad", "Fischer", "Mendes", "Sharma", "Brown", "Khan", "Weber",
    "Rossi", "Kim", "Nakamura", "Okafor", "Petrov", "Dubois", "Garcia", "Park", "Mensah", "Novak",
    "Patel", "Larsen", "Kowalski", "Murphy", "Silva", "Berg", "Cohen", "Ali", "Gupta", "Moreau",
    "Chen", "Costa", "Ivanova", "Jensen", "Yamamoto", "Nguyen", "Schmidt", "Ortiz", "Hughes",
    "Romano", "Sato", "Andersen", "Bianchi", "Wright", "Torres", "Kaya", "Lindqvist", "Adeyemi",
)
_CITIES = (
    "Lisbon", "Tokyo", "Nairobi", "Toronto", "Berlin", "Lima", "Mumbai", "Oslo", "Cairo", "Seoul",
    "Madrid", "Denver", "Krakow", "Dublin", "Accra", "Hanoi", "Porto", "Vienna", "Santiago", "Osaka",
    "Chicago", "Lyon", "Istanbul", "Melbourne", "Bogota", "Helsinki", "Marseille", "Quito",
    "New York", "Cape Town", "Buenos Aires", "San Diego", "Hong Kong", "Rio de Janeiro", "Tel Aviv",
    "Kuala Lumpur", "Mexico City", "Las Vegas", "St. Louis", "Abu Dhabi", "Sao Paulo", "Glasgow",
    "Zagreb", "Perth", "Montreal", "Athens", "Prague", "Manila", "Bergen", "Valencia", "Tallinn",
)
_JOBS = ("nurse", "architect", "teacher", "baker", "pilot", "chemist", "lawyer", "chef", "engineer",
         "painter", "librarian", "carpenter", "journalist", "dentist", "violinist", "gardener")
_SEASONS = ("spring", "summer", "autumn", "winter")
_THINGS = ("cats", "bikes", "plants", "guitars", "sisters", "brothers", "dogs", "books",
           "paintings", "awards", "patents", "children")

# {n}: the person's name, {a}: age, {c}: city, {o}: another city (distractor), {x}/{y}: distractor
# numbers, {j}: job, {m}: month, {s}: season, {t}: a countable thing, {yr}: a year.
_TEMPLATES = (
    "{n}, {a}, moved to {c} last {s}.",
    "At {a}, {n} opened a small bakery in {c}.",
    "{n} ({a}) lives in {c} with {x} {t}.",
    "Meet {n}: {a} years old, based in {c}, works {y} hours a week.",
    "{c} has been home to {n} since {yr}; {n0} turned {a} in {m}.",
    "Last year {n} ran {x} marathons; now {a}, {n0} coaches runners in {c}.",
    "The {a}-year-old {j} {n} from {c} has {x} {t}.",
    "{n} left {o} for {c} at the age of {a}.",
    "After {x} years in {o}, {n}, {a}, settled in {c}.",
    "Our new {j} is {n}. {n0} is {a} and commutes from {c}, about {y} km a day.",
    "Name: {n}. Age: {a}. Hometown: {c}. Apartment {y}, floor {x}.",
    "{n} is {ja} who grew up in {o} but lives in {c} now; {n0} is {a}.",
    "In {m}, {n} ({a}) flew home to {c} after {x} days in {o}.",
    "{n}, who is {a}, rents a flat in {c} for {y}0 euros a month.",
    "Born in {o}, {n} now works as {ja} in {c} and is {a} years old.",
    "{x} {t} and {y} plants share a house in {c} with {n}, aged {a}.",
    "Reporter's note: {n} ({j}, {a}) answered our call from {c} at {x}:30.",
    "{n} celebrated turning {a} with {y} friends at home in {c}.",
    "Ticket #{y}{x}: {n}, {a}, from {c}, seat {x}.",
    "When {n} was {x}, the family moved to {o}; today {n0} is {a} and lives in {c}.",
    "{j} {n}, {a}, has visited {o} {x} times but will never leave {c}.",
    "Since {yr}, {n} has lived in {c}. {n0} is {a}, with {x} {t}.",
)


# Harder shapes, each a skill the answer needs beyond copying:
# surname first ("LOPEZ, Maria") -> "Maria Lopez"; a birthday tomorrow ({a1} = age + 1) -> age.
_SURNAME_FIRST = (
    "Registry entry: {last}, {first}; age {a}; residence {c}; previous address {o}.",
    "{last}, {first} ({a}) - {j} - {c}, formerly {o}.",
    "Passenger {last}, {first}, age {a}, boarding in {c}, gate {x}.",
)
_NEXT_BIRTHDAY = (
    "{n} turns {a1} tomorrow and throws a party in {c} for {y} guests.",
    "Tomorrow {n} of {c} will be {a1}; {n0} grew up in {o}.",
    "{n}, {ja} in {c}, has a birthday tomorrow: {n0} turns {a1}.",
)
_TITLES = ("Dr.", "Prof.")
_JSON_FIELDS = ("name", "age", "city")  # the answer's keys, in order
_UNITS = ("", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen")


def number_words(n: int) -> str:
    """10..99 in English words: 34 -> 'thirty-four'."""
    if 10 <= n < 20:
        return _TEENS[n - 10]
    tens, units = divmod(n, 10)
    return _TENS[tens] + (f"-{_UNITS[units]}" if units else "")


def make(rng: random.Random) -> tuple[str, str]:
    """(prompt, answer): one sentence in a random shape; the answer is compact JSON."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    if rng.random() < 0.12:
        first = f"{first} {rng.choice('ABCDEFGHJKLMNPRST')}."
    name = f"{first} {last}"  # the answer: no title, first name first
    shown = f"{rng.choice(_TITLES)} {name}" if rng.random() < 0.15 else name
    age = rng.randint(18, 89)
    city = rng.choice(_CITIES)
    other = rng.choice([c for c in _CITIES if c != city])
    x = rng.randint(2, 19)
    y = rng.choice([v for v in range(2, 99) if v not in (age, age + 1)])
    kind = rng.random()
    if kind < 0.15:
        template = rng.choice(_SURNAME_FIRST)
        last = last.upper() if rng.random() < 0.5 else last
    elif kind < 0.3:
        template = rng.choice(_NEXT_BIRTHDAY)
    else:
        template = rng.choice(_TEMPLATES)
    job = rng.choice(_JOBS)
    age_text = number_words(age) if rng.random() < 0.25 else str(age)
    sentence = template.format(
        n=shown, n0=first.split()[0], first=first, last=last, a=age_text, a1=age + 1, c=city, o=other,
        x=x, y=y, j=job, ja=("an " if job[0] in "aeiou" else "a ") + job, m=rng.choice(MONTHS),
        s=rng.choice(_SEASONS),
        t=rng.choice(_THINGS), yr=rng.randint(1995, 2023),
    )
    sentence = sentence[0].upper() + sentence[1:]
    prompt = f"Extract the person as JSON:\n{sentence}"
    return prompt, json.dumps({"name": name, "age": age, "city": city}, ensure_ascii=False)


def parse_json_object(text: str) -> Optional[dict]:
    """The first JSON object in ``text`` (a ```json fence or leading words are tolerated), else None."""
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            start = text.find("{", start + 1)
            continue
        return obj if isinstance(obj, dict) else None
    return None


def check(prediction: str, reference: str) -> dict:
    """Exact match of the parsed object (same keys, equal values of the same type), plus whether
    the prediction parsed at all and which fields were right."""
    ref = json.loads(reference)
    pred = parse_json_object(prediction)
    fields_ok = {k: pred is not None and k in pred and pred[k] == ref[k] and type(pred[k]) is type(ref[k])
                 for k in _JSON_FIELDS}
    exact = pred is not None and set(pred) == set(ref) and all(fields_ok.values())
    return {"correct": exact, "valid_json": pred is not None, "fields": fields_ok}

