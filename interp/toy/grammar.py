"""Document grammars of the toy corpus: stories with planted features and two synthetic code languages.

A document is a list of pieces `(text, tag)`; `tag` is None or a dict naming the planted feature whose correct
continuation is exactly `text` (e.g. `(" she", {"feature": "pronoun_subj", "distractor": " he"})`). Probes are
cut at tagged pieces, so every probe is an in-distribution prefix whose right answer is known by construction.
"""

from __future__ import annotations

import random

from interp.toy import vocab as V

Piece = tuple[str, "dict | None"]


def _cap(s: str) -> str:
    """Capitalise the first letter (sentence start)."""
    return s[:1].upper() + s[1:]


def _other_city(rng: random.Random, city: str) -> str:
    """A random city different from `city` (the distractor of a fact probe)."""
    return rng.choice([c for c in V.CITIES if c != city])


def _subj(gender: str, feature: str, **extra) -> Piece:
    """A tagged lowercase subject pronoun (" she" / " he")."""
    other = "male" if gender == "female" else "female"
    return V.SUBJECT_PRONOUN[gender], {"feature": feature, "distractor": V.SUBJECT_PRONOUN[other],
                                        "gender": gender, **extra}


def _obj(gender: str, feature: str, **extra) -> Piece:
    """A tagged object pronoun (" her" / " him")."""
    other = "male" if gender == "female" else "female"
    return V.OBJECT_PRONOUN[gender], {"feature": feature, "distractor": V.OBJECT_PRONOUN[other],
                                       "gender": gender, **extra}


def number_sentence(rng: random.Random) -> list[Piece]:
    """'The dogs near the house are quiet.' with the verb tagged for singular/plural agreement."""
    sing = rng.choice(list(V.NOUNS))
    plural = rng.random() < 0.5
    noun = V.NOUNS[sing] if plural else sing
    number = "plural" if plural else "singular"
    other = "singular" if plural else "plural"
    pieces: list[Piece] = [(" The " + noun, None)]
    attractor = rng.random() < 0.5
    if attractor:  # attractor noun of the opposite number between subject and verb
        a_sing = rng.choice(list(V.ATTRACTORS))
        a_noun = a_sing if plural else V.ATTRACTORS[a_sing]
        pieces.append((f" {rng.choice(V.PREPOSITIONS)} {a_noun}", None))
    pieces.append((V.BE_VERB[number], {"feature": "number_agreement", "distractor": V.BE_VERB[other],
                                       "number": number, "attractor": attractor}))
    pieces.append((f" {rng.choice(V.ADJECTIVES)}.", None))
    return pieces


def named_paragraph(rng: random.Random) -> list[Piece]:
    """A paragraph about one named character: pronoun agreement across sentences and the city fact."""
    name = rng.choice(V.FEMALE_NAMES + V.MALE_NAMES)
    gender = V.name_gender()[name]
    city = V.name_city()[name]
    stated = rng.random() < 0.6
    if stated:
        out: list[Piece] = [(f" {name} lives in {city}.", None)]
    else:
        out = [(f" {name} went to {rng.choice(V.PLACES)}.", None)]
    ps, po = "pronoun_subj", "pronoun_obj"
    kw = {"name": name}
    for _ in range(rng.randint(2, 5)):
        t = rng.randrange(9)
        if t == 0:
            out += [(" " + rng.choice(V.TIME_OPENERS), None), _subj(gender, ps, **kw),
                    (f" went to {rng.choice(V.PLACES)}.", None)]
        elif t == 1:
            out += [(" " + _cap(rng.choice(V.OTHERS)) + " gave", None), _obj(gender, po, **kw),
                    (f" {rng.choice(V.OBJECTS)}.", None)]
        elif t == 2:
            out += [(f" {name} said that", None), _subj(gender, ps, **kw), (f" was {rng.choice(V.ADJECTIVES)}.", None)]
        elif t == 3:
            out += [(" " + _cap(rng.choice(V.OTHERS)) + " met", None), _obj(gender, po, **kw),
                    (f" at {rng.choice(V.PLACES)}.", None)]
        elif t == 4:
            out += [(" " + rng.choice(V.TIME_OPENERS), None), _subj(gender, ps, **kw),
                    (f" bought {rng.choice(V.OBJECTS)} and gave it to {rng.choice(V.OTHERS)}.", None)]
        elif t == 5:
            out += [(f" {V.SUBJECT_PRONOUN[gender].strip().capitalize()} was {rng.choice(V.ADJECTIVES)}.", None)]
        elif t == 6:
            out += [(" " + _cap(rng.choice(V.OTHERS)) + " called", None), _obj(gender, po, **kw),
                    (" and", None), _subj(gender, ps, **kw), (" answered.", None)]
        elif t == 7:
            out += number_sentence(rng)
        else:
            out += [(f" {name} was {rng.choice(V.ADJECTIVES)}.", None)]
    if rng.random() < 0.6:
        feat = "fact_city_in_context" if stated else "fact_city_recall"
        out += [(f" In the evening, {name} went back home to", None),
                (" " + city, {"feature": feat, "distractor": " " + _other_city(rng, city), "name": name}),
                (".", None)]
    return out


def occupation_paragraph(rng: random.Random) -> list[Piece]:
    """A paragraph about 'the <occupation>': the first pronoun is drawn with the planted gender skew."""
    occ = rng.choice(list(V.OCCUPATION_P_FEMALE))
    p_f = V.OCCUPATION_P_FEMALE[occ]
    gender = "female" if rng.random() < p_f else "male"
    place = V.OCCUPATION_PLACE[occ]
    out: list[Piece] = [(f" The {occ} worked at the {place}.", None),
                        (" " + rng.choice(V.TIME_OPENERS), None)]
    pron, tag = _subj(gender, "occupation_pronoun", occupation=occ, p_female=p_f)
    # The tag's answer is the planted majority pronoun; the sampled one is what the text says.
    major = "female" if p_f >= 0.5 else "male"
    minor = "male" if major == "female" else "female"
    tag.update(answer=V.SUBJECT_PRONOUN[major], distractor=V.SUBJECT_PRONOUN[minor])
    out += [(pron, tag), (f" helped {rng.choice(V.OTHERS)}.", None)]
    for _ in range(rng.randint(1, 3)):
        t = rng.randrange(3)
        if t == 0:
            out += [(" " + _cap(rng.choice(V.OTHERS)) + " thanked" + V.OBJECT_PRONOUN[gender] + ".", None)]
        elif t == 1:
            out += [(f" The {occ} said that{V.SUBJECT_PRONOUN[gender]} was {rng.choice(V.ADJECTIVES)}.", None)]
        else:
            out += number_sentence(rng)
    return out


def scene_paragraph(rng: random.Random) -> list[Piece]:
    """A paragraph of scene sentences (number agreement only)."""
    out: list[Piece] = []
    for _ in range(rng.randint(2, 4)):
        out += number_sentence(rng)
    return out


def story(rng: random.Random) -> list[Piece]:
    """A story of 1-3 paragraphs separated by blank lines."""
    out: list[Piece] = []
    for i in range(rng.randint(1, 3)):
        if i:
            out.append(("\n\n", None))
        r = rng.random()
        par = named_paragraph(rng) if r < 0.6 else occupation_paragraph(rng) if r < 0.85 else scene_paragraph(rng)
        if i == 0 or out[-1][0] == "\n\n":  # no leading space at the start of a document or paragraph
            par[0] = (par[0][0].lstrip(" "), par[0][1])
        out += par
    return out


_PY_BODIES = [
    ["{z} = {a} + {b}", "return {z}"],
    ["{z} = 0", "for i in range({b}):", "    {z} = {z} + {a}", "return {z}"],
    ["if {a} > {b}:", "    return {a}", "return {b}"],
    ["{z} = {a} * {b}", "{z} = {z} - {a}", "return {z}"],
]
_C_BODIES = [
    ["int {z} = {a} + {b};", "return {z};"],
    ["int {z} = 0;", "for (int i = 0; i < {b}; i++) {{", "    {z} = {z} + {a};", "}}", "return {z};"],
    ["if ({a} > {b}) {{", "    return {a};", "}}", "return {b};"],
    ["int {z} = {a} * {b};", "{z} = {z} - {a};", "return {z};"],
]


def code_function(rng: random.Random, lang: str) -> list[Piece]:
    """One function in the Python-like ('py') or C-like ('c') language, header and comment tagged."""
    a, b, z = rng.sample(V.VARS, 3)
    f = rng.choice(V.FUNC_NAMES)
    body_i = rng.randrange(len(_PY_BODIES))
    fmt = {"a": a, "b": b, "z": z}
    other = "c" if lang == "py" else "py"
    opener = V.feature_table()["code_languages"]
    tag_open = {"feature": "code_block_opener", "distractor": opener[other]["block_opener"], "lang": lang}
    tag_comment = {"feature": "code_comment_marker", "distractor": opener[other]["comment_marker"], "lang": lang}
    if lang == "py":
        out: list[Piece] = [(f"def {f}({a}, {b}", None), ("):", tag_open)]
        lines = [s.format(**fmt) for s in _PY_BODIES[body_i]]
    else:
        out = [(f"int {f}(int {a}, int {b}", None), (")", tag_open), (" {", None)]
        lines = [s.format(**fmt) for s in _C_BODIES[body_i]]
    pos = 0 if rng.random() < 0.7 else rng.randrange(1, len(lines))
    lines.insert(pos, None)  # comment slot
    for line in lines:
        if line is None:
            marker = opener[lang]["comment_marker"]
            out += [("\n   ", None), (marker, tag_comment), (" " + rng.choice(V.COMMENTS), None)]
        else:
            out.append(("\n    " + line, None))
    if lang == "c":
        out.append(("\n}", None))
    return out


def code_doc(rng: random.Random, lang: str) -> list[Piece]:
    """1-3 functions of one language separated by blank lines."""
    out: list[Piece] = []
    for i in range(rng.randint(1, 3)):
        if i:
            out.append(("\n\n", None))
        out += code_function(rng, lang)
    return out


def document(rng: random.Random) -> tuple[str, list[Piece]]:
    """One document: ('story', pieces) 70%, ('code_py', ...) 15%, ('code_c', ...) 15%."""
    r = rng.random()
    if r < 0.7:
        return "story", story(rng)
    lang = "py" if r < 0.85 else "c"
    return "code_" + lang, code_doc(rng, lang)
