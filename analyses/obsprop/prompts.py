"""Prompts and labels from the embedded corpus' ground truth (data/corpus/features.json, probes.jsonl).

Counterfactual pairs for path patching differ only in the planted feature of the probe's last paragraph:
a name swapped for the opposite-gender name (with its pronouns), or an occupation swapped for one of the
opposite skew (with its workplace). Pairs whose two prompts tokenize to different lengths are dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from interp.errors import ConfigError, DataSourceError

_PRON_SWAP = {" she": " he", " he": " she", " her": " him", " him": " her", "She": "He", "He": "She"}


def corpus_dir(path: str = "") -> Path:
    """The folder holding features.json and probes.jsonl (default: the embedded data/corpus)."""
    if path:
        d = Path(path)
    else:
        from interp.models import data_dir

        d = data_dir() / "corpus"
    if not (d / "features.json").is_file() or not (d / "probes.jsonl").is_file():
        raise DataSourceError(f"no features.json / probes.jsonl in {d}",
                              hint="point probes_dir at a corpus folder written by the embedded-default builder")
    return d


def load_ground(path: str = "") -> tuple[dict, list[dict]]:
    """(features table, probe rows)."""
    d = corpus_dir(path)
    feats = json.loads((d / "features.json").read_text())
    probes = [json.loads(line) for line in (d / "probes.jsonl").read_text().splitlines() if line.strip()]
    return feats, probes


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of text, no special tokens added (prompts carry their own <|endoftext|>)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _swap_words(text: str, mapping: dict[str, str]) -> str:
    """Simultaneous whole-word replacement."""
    pat = re.compile(r"\b(" + "|".join(re.escape(k) for k in mapping) + r")\b")
    return pat.sub(lambda m: mapping[m.group(1)], text)


def _swap_pronouns(text: str) -> str:
    pat = re.compile(r"( she| he| her| him|She|He)\b")
    return pat.sub(lambda m: _PRON_SWAP[m.group(1)], text)


def _last_par(prompt: str) -> tuple[str, str]:
    head, sep, last = prompt.rpartition("\n\n")
    return head + sep, last


def gender_pairs(feats: dict, probes: list[dict], feature: str, tokenizer, limit: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counterfactual (female, male) prompt pairs from probes of `feature` (pronoun_subj / pronoun_obj), same
    length within a pair, right-padded: (female [b, T], male [b, T], last-token index [b])."""
    names = feats["names"]
    fem = [n for n, v in names.items() if v["gender"] == "female"]
    mal = [n for n, v in names.items() if v["gender"] == "male"]
    partner = {**dict(zip(fem, mal)), **dict(zip(mal, fem))}
    out = []
    for r in probes:
        if r.get("feature") != feature or r.get("name") not in partner:
            continue
        head, last = _last_par(r["prompt"])
        other = head + _swap_pronouns(_swap_words(last, {r["name"]: partner[r["name"]]}))
        f, m = (r["prompt"], other) if r["gender"] == "female" else (other, r["prompt"])
        out.append((encode(tokenizer, f), encode(tokenizer, m)))
    return _stack_pairs(out, limit, feature)


def occupation_pairs(feats: dict, probes: list[dict], tokenizer, limit: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(female-skewed, male-skewed) occupation prompt pairs from occupation_pronoun probes."""
    occ = feats["occupations"]
    fem = [o for o, v in occ.items() if v["p_female"] > 0.5]
    mal = [o for o, v in occ.items() if v["p_female"] < 0.5]
    partner = {**dict(zip(fem, mal)), **dict(zip(mal, fem))}
    out = []
    for r in probes:
        o = r.get("occupation")
        if r.get("feature") != "occupation_pronoun" or o not in partner:
            continue
        head, last = _last_par(r["prompt"])
        p = partner[o]
        swap = {o: p, occ[o]["place"]: occ[p]["place"]} if occ[o]["place"] != occ[p]["place"] else {o: p}
        other = head + _swap_words(last, swap)
        f, m = (r["prompt"], other) if o in fem else (other, r["prompt"])
        out.append((encode(tokenizer, f), encode(tokenizer, m)))
    return _stack_pairs(out, limit, "occupation_pronoun")


PAD_ID = 1  # <|padding|> in the embedded tokenizer; any id works (right padding never reaches the last token)


def pad_right(seqs: list[list[int]] | list[torch.Tensor], pad_id: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token sequences into [b, T_max]; returns (tokens, index of each sequence's last token [b])."""
    lens = [len(x) for x in seqs]
    out = torch.full((len(seqs), max(lens)), pad_id, dtype=torch.long)
    for i, x in enumerate(seqs):
        out[i, : lens[i]] = torch.as_tensor(x, dtype=torch.long)
    return out, torch.tensor(lens) - 1


def _stack_pairs(pairs: list[tuple[list[int], list[int]]], limit: int, what: str
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The `limit` shortest equal-length pairs, right-padded: (pos tokens [b, T], neg tokens [b, T], last [b])."""
    same = sorted(((a, b) for a, b in pairs if len(a) == len(b)), key=lambda ab: len(ab[0]))[:limit]
    if not same:
        raise DataSourceError(f"no equal-length counterfactual pairs for {what}", hint="check probes.jsonl")
    tp, last = pad_right([a for a, _ in same])
    tn, _ = pad_right([b for _, b in same])
    return tp, tn, last


def class_prompts(probes: list[dict], feature: str, key: str, value, tokenizer, limit: int
                  ) -> list[list[int]]:
    """Token ids of the `limit` shortest probes with probe[key] == value (e.g. code_comment_marker, lang == 'py');
    value may be a callable predicate."""
    ok = value if callable(value) else (lambda v: v == value)
    out = [encode(tokenizer, r["prompt"]) for r in probes if r.get("feature") == feature and ok(r.get(key))]
    if not out:
        raise DataSourceError(f"no probes with feature={feature}, {key}={value}", hint="check probes.jsonl")
    return sorted(out, key=len)[:limit]


def name_token_ids(feats: dict, tokenizer) -> dict[str, list[int]]:
    """Single-token ids of every name (with and without a leading space), by gender."""
    out: dict[str, list[int]] = {"female": [], "male": []}
    for name, v in feats["names"].items():
        for form in (name, " " + name):
            ids = encode(tokenizer, form)
            if len(ids) == 1:
                out[v["gender"]].append(ids[0])
    if not out["female"] or not out["male"]:
        raise ConfigError("no single-token names in features.json", hint="names must be single tokens")
    return out


def occupation_tokens(feats: dict, tokenizer) -> tuple[list[int], list[int]]:
    """Single-token ids of female-skewed and male-skewed occupations (' nurse', ...)."""
    f, m = [], []
    for o, v in feats["occupations"].items():
        ids = encode(tokenizer, " " + o)
        if len(ids) == 1 and v["p_female"] != 0.5:
            (f if v["p_female"] > 0.5 else m).append(ids[0])
    return f, m
