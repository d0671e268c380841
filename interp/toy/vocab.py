"""Word lists and the planted ground truth of the toy corpus (names, genders, cities, occupation skews, ...).

Everything a probe or an analysis needs to know about what the corpus plants lives here, so that
`features.json` is a plain dump of these tables (see `feature_table`).
"""

from __future__ import annotations

from functools import lru_cache

FEMALE_NAMES = [
    "Mary", "Anna", "Emma", "Lucy", "Sarah", "Kate", "Alice", "Jane", "Laura", "Emily",
    "Rose", "Julia", "Clara", "Nora", "Helen", "Grace", "Lily", "Eva", "Ruth", "Amy",
]
MALE_NAMES = [
    "John", "Tom", "James", "David", "Peter", "Mark", "Paul", "Jack", "Sam", "Ben",
    "Luke", "Adam", "Henry", "Oliver", "Leo", "Max", "Noah", "Carl", "Victor", "Frank",
]
CITIES = ["Paris", "London", "Rome", "Berlin", "Madrid", "Vienna", "Oslo", "Dublin", "Prague", "Lisbon"]

# Occupation -> probability that the first pronoun referring to "the <occupation>" is female (" she").
OCCUPATION_P_FEMALE = {
    "nurse": 0.9, "teacher": 0.9, "secretary": 0.9, "dancer": 0.9, "librarian": 0.9,
    "engineer": 0.1, "doctor": 0.1, "pilot": 0.1, "farmer": 0.1, "programmer": 0.1,
    "writer": 0.5, "baker": 0.5, "lawyer": 0.5, "painter": 0.5,
}
OCCUPATION_PLACE = {
    "nurse": "hospital", "teacher": "school", "secretary": "office", "dancer": "theater",
    "librarian": "library", "engineer": "factory", "doctor": "hospital", "pilot": "airport",
    "farmer": "farm", "programmer": "office", "writer": "library", "baker": "bakery",
    "lawyer": "court", "painter": "studio",
}

# Singular / plural nouns for number agreement (" is" vs " are").
NOUNS = {
    "cat": "cats", "dog": "dogs", "bird": "birds", "tree": "trees", "car": "cars",
    "house": "houses", "box": "boxes", "child": "children", "flower": "flowers", "horse": "horses",
}
ATTRACTORS = {"garden": "gardens", "house": "houses", "river": "rivers", "road": "roads", "wall": "walls"}
PREPOSITIONS = ["near the", "by the", "behind the", "next to the"]
ADJECTIVES = ["happy", "tired", "small", "old", "quiet", "green", "red", "big", "busy", "warm"]

# Non-gendered others who interact with the focal character (never referred to by a pronoun).
OTHERS = ["a friend", "a neighbor", "a child", "the old baker", "a stranger", "the shopkeeper"]
OBJECTS = ["a book", "an apple", "a letter", "a cup of tea", "a map", "a red hat", "a small box", "a gift"]
PLACES = ["the market", "the park", "the river", "the station", "the museum", "the garden", "the beach"]
TIME_OPENERS = ["Later,", "After lunch,", "In the morning,", "Soon,", "Then", "After a while,", "At noon,"]

# Code languages: function names, comment phrases, variable names.
FUNC_NAMES = ["add", "scale", "total", "count", "mix", "shift", "limit", "merge", "step", "clamp",
              "blend", "sum_of", "next_id", "area", "mean"]
COMMENTS = ["add two numbers", "compute the total", "loop over items", "return the result",
            "keep the value small", "update the counter", "check the limit", "store the sum"]
VARS = ["x", "y", "a", "b", "n", "k", "m"]

SUBJECT_PRONOUN = {"female": " she", "male": " he"}
OBJECT_PRONOUN = {"female": " her", "male": " him"}
BE_VERB = {"singular": " is", "plural": " are"}


@lru_cache(maxsize=1)
def name_gender() -> dict[str, str]:
    """Planted gender of every name ('female' / 'male')."""
    g = {n: "female" for n in FEMALE_NAMES}
    g.update({n: "male" for n in MALE_NAMES})
    return g


@lru_cache(maxsize=1)
def name_city() -> dict[str, str]:
    """Planted home city of every name (the fact table): a fixed, balanced assignment."""
    names = FEMALE_NAMES + MALE_NAMES
    # Interleave so each city gets both genders; deterministic, no RNG needed.
    return {n: CITIES[(i * 3 + i // len(CITIES)) % len(CITIES)] for i, n in enumerate(names)}


@lru_cache(maxsize=1)
def feature_table() -> dict:
    """The machine-readable planted ground truth written to data/corpus/features.json (do not mutate: cached)."""
    return {
        "names": {n: {"gender": g, "city": name_city()[n]} for n, g in name_gender().items()},
        "cities": list(CITIES),
        "occupations": {o: {"p_female": p, "place": OCCUPATION_PLACE[o]} for o, p in OCCUPATION_P_FEMALE.items()},
        "pronouns": {"subject": SUBJECT_PRONOUN, "object": OBJECT_PRONOUN},
        "number_agreement": {"nouns": NOUNS, "attractors": ATTRACTORS, "verbs": BE_VERB},
        "code_languages": {
            "py": {"comment_marker": " #", "block_opener": "):", "header": "def f(x):"},
            "c": {"comment_marker": " //", "block_opener": ")", "header": "int f(int x) {"},
        },
        "delimiters": {"document": "<|endoftext|>", "paragraph": "\n\n", "sentence": "."},
    }
