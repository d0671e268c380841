"""Deterministic toy corpus: train / held-out / probe splits drawn from the grammar with per-split seeds.

The train split is never shipped; `train_texts(seed, n)` regenerates it bit-for-bit. Every document starts with
the document delimiter `<|endoftext|>` (token 0), so position 0 of a document is always the same token.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from interp.errors import ConfigError
from interp.toy import grammar, vocab

BOS = "<|endoftext|>"
DEFAULT_SEED = 0


def _rng(seed: int, split: str) -> random.Random:
    """Independent, reproducible stream per split (string seeding is stable across Python runs)."""
    return random.Random(f"interp-toy-{seed}-{split}")


def documents(seed: int, split: str, n: int) -> Iterator[tuple[str, list[grammar.Piece]]]:
    """Yield `n` (kind, pieces) documents of one split ('train', 'heldout' or 'probes')."""
    if split not in ("train", "heldout", "probes"):
        raise ConfigError(f"unknown corpus split {split!r}", hint="use 'train', 'heldout' or 'probes'")
    rng = _rng(seed, split)
    for _ in range(n):
        yield grammar.document(rng)


def doc_text(pieces: list[grammar.Piece]) -> str:
    """Document text with its leading delimiter."""
    return BOS + "".join(t for t, _ in pieces)


def train_texts(seed: int = DEFAULT_SEED, n_docs: int = 40_000) -> list[str]:
    """The (unshipped) train split, regenerated from the seed."""
    return [doc_text(p) for _, p in documents(seed, "train", n_docs)]


def heldout_records(seed: int = DEFAULT_SEED, n_docs: int = 2_000) -> list[dict]:
    """Held-out documents as {'text', 'kind'} records (text starts with <|endoftext|>)."""
    return [{"text": doc_text(p), "kind": k} for k, p in documents(seed, "heldout", n_docs)]


def probe_records(tokenizer, seed: int = DEFAULT_SEED, per_feature: int = 250, max_docs: int = 20_000) -> list[dict]:
    """Probe prompts cut at tagged pieces of fresh documents: one probe per feature per document.

    A probe is kept only if its answer and distractor are single tokens and tokenizing prompt + answer gives
    the prompt's tokens followed by the answer token (so the prompt ends on a token boundary seen in training).
    """
    rng = _rng(seed, "probe-pick")
    counts: dict[str, int] = {}
    occ_counts: dict[str, int] = {}
    n_occ = len(vocab.OCCUPATION_P_FEMALE)
    out: list[dict] = []
    for kind, pieces in documents(seed, "probes", max_docs):
        tagged = [i for i, (_, tag) in enumerate(pieces) if tag is not None]
        rng.shuffle(tagged)
        seen: set[str] = set()
        for i in tagged:
            text, tag = pieces[i]
            feat = tag["feature"]
            if feat in seen or counts.get(feat, 0) >= per_feature:
                continue
            if feat == "occupation_pronoun":  # balance occupations
                occ = tag["occupation"]
                if occ_counts.get(occ, 0) >= -(-per_feature // n_occ):
                    continue
            prompt = doc_text(pieces[:i])
            answer = tag.get("answer", text)
            rec = _check_probe(tokenizer, prompt, text, answer, tag["distractor"])
            if rec is None:
                continue
            seen.add(feat)
            counts[feat] = counts.get(feat, 0) + 1
            if feat == "occupation_pronoun":
                occ_counts[tag["occupation"]] = occ_counts.get(tag["occupation"], 0) + 1
            extra = {k: v for k, v in tag.items() if k not in ("feature", "answer", "distractor")}
            out.append({"feature": feat, "prompt": prompt, "answer": answer, "distractor": tag["distractor"],
                        **rec, "kind": kind, **extra})
        if all(counts.get(f, 0) >= per_feature for f in FEATURES):
            break
    return out


FEATURES = ["pronoun_subj", "pronoun_obj", "occupation_pronoun", "number_agreement",
            "fact_city_in_context", "fact_city_recall", "code_block_opener", "code_comment_marker"]


def _check_probe(tokenizer, prompt: str, text: str, answer: str, distractor: str) -> dict | None:
    """Token ids of answer/distractor if the probe is clean (single tokens, boundary-aligned), else None."""
    ids = {}
    for key, s in (("answer_id", answer), ("distractor_id", distractor), ("text_id", text)):
        toks = tokenizer.encode(s, add_special_tokens=False)
        if len(toks) != 1:
            return None
        ids[key] = toks[0]
    p = tokenizer.encode(prompt, add_special_tokens=False)
    full = tokenizer.encode(prompt + text, add_special_tokens=False)
    if full != p + [ids["text_id"]]:
        return None
    ids.pop("text_id")
    return ids


def write_jsonl(path: Path, records: list[dict]) -> None:
    """One JSON object per line, UTF-8, stable key order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Inverse of write_jsonl."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_corpus(out_dir: Path, tokenizer, seed: int = DEFAULT_SEED, n_heldout: int = 2_000,
                 per_feature: int = 250) -> dict:
    """Write features.json, heldout.jsonl and probes.jsonl; return a summary (counts per feature)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    probes = probe_records(tokenizer, seed, per_feature)
    feats = dict(vocab.feature_table())
    feats["seed"] = seed
    feats["token_ids"] = _token_ids(tokenizer)
    feats["probe_features"] = FEATURES
    (out_dir / "features.json").write_text(json.dumps(feats, indent=1, ensure_ascii=False) + "\n")
    write_jsonl(out_dir / "heldout.jsonl", heldout_records(seed, n_heldout))
    write_jsonl(out_dir / "probes.jsonl", probes)
    counts: dict[str, int] = {}
    for p in probes:
        counts[p["feature"]] = counts.get(p["feature"], 0) + 1
    return counts


def _token_ids(tokenizer) -> dict[str, list[int]]:
    """Token ids of every planted word (with its leading space), to show which are single tokens."""
    words = [" she", " he", " her", " him", " She", " He", " is", " are", " #", " //", "):", ")", " {", "\n   "]
    words += [" " + w for w in vocab.FEMALE_NAMES + vocab.MALE_NAMES + vocab.CITIES]
    words += [" " + o for o in vocab.OCCUPATION_P_FEMALE]
    return {w: tokenizer.encode(w, add_special_tokens=False) for w in words}
