"""Toy corpus, tokenizer and shipped corpus files: determinism, planted truth and probe well-formedness."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from interp.errors import ConfigError
from interp.toy import corpus, grammar, vocab
from interp.toy.tokenizer import REQUIRED_SINGLE, load_tokenizer, single_token_report

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(DATA / "tokenizer")


@pytest.fixture(scope="module")
def probes():
    return corpus.read_jsonl(DATA / "corpus" / "probes.jsonl")


def test_toy_corpus_is_deterministic_per_seed_and_split():
    a = corpus.train_texts(0, 50)
    assert a == corpus.train_texts(0, 50)
    assert a != corpus.train_texts(1, 50)
    held = [r["text"] for r in corpus.heldout_records(0, 50)]
    assert not set(held) & set(a) or len(set(held) & set(a)) < 5  # splits are independent draws
    assert all(t.startswith(corpus.BOS) and corpus.BOS not in t[len(corpus.BOS):] for t in a)


def test_toy_unknown_split_is_a_config_error():
    with pytest.raises(ConfigError):
        next(corpus.documents(0, "valid", 1))


def test_toy_tags_agree_with_planted_truth():
    """Every tagged piece is the right continuation by the ground-truth tables (brute force over 3000 docs)."""
    rng = random.Random(5)
    gender, city = vocab.name_gender(), vocab.name_city()
    seen = set()
    for _ in range(3000):
        kind, pieces = grammar.document(rng)
        for text, tag in pieces:
            if tag is None:
                continue
            f = tag["feature"]
            seen.add(f)
            if f == "pronoun_subj":
                assert text == vocab.SUBJECT_PRONOUN[gender[tag["name"]]]
            elif f == "pronoun_obj":
                assert text == vocab.OBJECT_PRONOUN[gender[tag["name"]]]
            elif f.startswith("fact_city"):
                assert text == " " + city[tag["name"]] and tag["distractor"] != text
            elif f == "code_comment_marker":
                assert text == {"py": " #", "c": " //"}[tag["lang"]] and kind == "code_" + tag["lang"]
            elif f == "number_agreement":
                assert text == vocab.BE_VERB[tag["number"]]
    assert seen == set(corpus.FEATURES)


def test_toy_occupation_skew_is_planted_at_the_stated_rate():
    """The sampled first pronoun follows p_female (binomial check over many paragraphs)."""
    rng = random.Random(11)
    she = {"nurse": [0, 0], "engineer": [0, 0]}
    for _ in range(6000):
        for text, tag in grammar.occupation_paragraph(rng):
            if tag and tag.get("occupation") in she:
                she[tag["occupation"]][0] += text == " she"
                she[tag["occupation"]][1] += 1
    for occ, (k, n) in she.items():
        p = vocab.OCCUPATION_P_FEMALE[occ]
        assert abs(k / n - p) < 4 * (p * (1 - p) / n) ** 0.5 + 1e-9


def test_toy_tokenizer_has_single_token_markers(tok):
    report = single_token_report(tok)
    assert all(report.values()), report
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 0
    assert tok.encode("<|endoftext|>Mary", add_special_tokens=False)[0] == 0
    assert set(REQUIRED_SINGLE) <= set(report)


def test_toy_shipped_features_match_the_code():
    feats = json.loads((DATA / "corpus" / "features.json").read_text())
    truth = vocab.feature_table()
    for key in ("names", "occupations", "cities", "code_languages"):
        assert feats[key] == json.loads(json.dumps(truth[key]))
    assert sum(v["gender"] == "female" for v in feats["names"].values()) == len(vocab.FEMALE_NAMES)


def test_toy_shipped_heldout_is_the_seeded_split():
    recs = corpus.read_jsonl(DATA / "corpus" / "heldout.jsonl")
    size = (DATA / "corpus" / "heldout.jsonl").stat().st_size
    assert 0.5e6 <= size <= 1.5e6
    assert {r["kind"] for r in recs} == {"story", "code_py", "code_c"}
    assert recs[:20] == corpus.heldout_records(0, 20)


def test_toy_shipped_probes_are_clean(tok, probes):
    """Each probe: single-token answer/distractor, prompt ends on a token boundary, enough per feature."""
    counts = {}
    for p in probes:
        counts[p["feature"]] = counts.get(p["feature"], 0) + 1
    assert set(counts) == set(corpus.FEATURES) and min(counts.values()) >= 200
    for p in probes[::7]:
        ids = tok.encode(p["prompt"], add_special_tokens=False)
        assert ids[0] == 0 and len(ids) <= 256
        assert tok.encode(p["answer"], add_special_tokens=False) == [p["answer_id"]]
        assert tok.encode(p["distractor"], add_special_tokens=False) == [p["distractor_id"]]
        assert p["answer_id"] != p["distractor_id"]
