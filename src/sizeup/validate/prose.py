"""The prose table: the one place that reads the free text of published points (quotes, `other`, precision and
recompute strings). Each entry names a concept, the wording that states it, and the job field it feeds; the
engine finds each concept clause by clause and decides whether the clause affirms or negates it:

    "no sequence parallelism"       -> sequence_parallel: False   (a negator before the words, same clause)
    "sequence_parallel=False"       -> sequence_parallel: False   (= false / off / disabled right after)
    "untied embeddings"             -> tied: not mentioned        (words match whole, never inside 'untied')
    "bnb" alone                     -> nothing (8-bit Adam needs '8-bit' / 'adamw8bit' wording)

`mentions(text)` returns {concept: True | False} for the concepts the text states or denies (absent = not said).
sizeup.validate.mapping turns these into job-flag values; nothing else reads prose.
"""

from __future__ import annotations

import functools
import re

_ORDINAL = r"(?:\d+(?:st|nd|rd|th)?|other|second|third|fourth)"
_BLOCK = r"(?:(?:decoder|transformer) )?(?:layers?|blocks?)"
_LAYER_FRACTION_WORDS = (rf"every {_ORDINAL} {_BLOCK}|\d+ (?:of|out of) \d+ {_BLOCK}|\d+ ?/ ?\d+ {_BLOCK}")
_ORDINAL_WORDS = {"other": 2, "second": 2, "third": 3, "fourth": 4}

# (concept, job field it informs, wording regex). Words are matched whole: a letter may not touch either end.
PROSE_TABLE: tuple[tuple[str, str, str], ...] = (
    ("fp8", "precision", r"fp8|float8|e4m3|e5m2"),
    ("fp32", "precision", r"fp32|float32|full precision"),
    ("tf32", "precision", r"tf32"),
    ("bf16", "precision", r"bf16|bfloat16"),
    ("fp16", "precision", r"fp16|float16|half precision|half"),
    ("mixed", "precision", r"amp|mixed|autocast"),
    ("master_weights", "precision", r"master(?: weights?)?"),
    ("pure", "precision", r"pure"),
    ("four_bit_base", "precision", r"nf4|4-bit"),
    ("compute_dtype", "precision", r"compute"),
    ("not_stated", "precision", r"not stated"),
    ("sequence_parallel", "sequence_parallel", r"sequence[ _-]parallel(?:ism)?"),
    ("adam_8bit", "optimizer", r"8-?bit(?: adamw?)?|(?:paged_?)?adamw?_?8-?bit"),
    ("lion", "optimizer", r"lion"),
    ("adafactor", "optimizer", r"adafactor"),
    ("sgd", "optimizer", r"sgd"),
    ("adam", "optimizer", r"(?:paged_?)?adamw?"),
    ("paged", "optimizer", r"paged(?:_?adamw?(?:_?8-?bit)?|_?lion)?"),
    ("compile", "compile", r"torch\.compile|compile on|compile: ?true|compiled|compile"),
    ("transformer_engine", "kernel", r"transformer ?engine"),
    ("chunked_ce", "loss", r"chunked cross[- ]entropy|chunked ce|chunked_ce"),
    # eager ATTENTION (materialised scores: attn_implementation='eager'), not eager modules with SDPA attention
    ("eager_attention", "attention", r"eager attention|attention[:=]? ?['\"]?eager|attn_implementation ?[=:]? ?['\"]?eager"),
    ("tied_embeddings", "tie_embeddings", r"tied(?: embeddings?)?|tie(?:s)? (?:word )?embeddings?|tie"),
    # checkpointing of only some blocks: 'every 2nd decoder layer', 'every other layer', '14 of 28 layers'
    ("recompute_layer_fraction", "recompute_layers", _LAYER_FRACTION_WORDS),
)

NEGATORS = r"no|not|without|w/o|disabled?|off|false|none|never"
# '= 0' denies; ': 0,2,4' (a list of indices) does not
_AFTER_NEG = re.compile(r"^\s*(?:(?:[:=]\s*)?(?:false|off|disabled|no|none)|=?\s*0)(?![a-z0-9])", re.I)


def _clauses(text: str) -> list[str]:
    return [c for c in re.split(r"[;,+()\n]|\.\s", text.lower()) if c.strip()]


@functools.lru_cache(maxsize=64)
def _pattern(words: str) -> re.Pattern:
    return re.compile(rf"(?<![a-z])(?:{words})(?![a-z])")


def clause_state(clause: str, words: str) -> bool | None:
    """True when the clause states the wording, False when it denies it, None when it does not mention it."""
    m = _pattern(words).search(clause)
    if not m:
        return None
    before = clause[:m.start()].split()[-3:]
    if any(re.fullmatch(rf"(?:{NEGATORS})[:,]?", w) for w in before):
        return False
    if _AFTER_NEG.match(clause[m.end():]):
        return False
    return True


def mentions(text: str | None) -> dict[str, bool]:
    """{concept: True (stated) | False (denied)} over the text's clauses; a statement anywhere wins over a denial
    elsewhere only when no clause denies it ('no SP' in one clause and 'SP' in another: denied)."""
    out: dict[str, bool] = {}
    if not text:
        return out
    for clause in _clauses(text):
        for concept, _, words in PROSE_TABLE:
            state = clause_state(clause, words)
            if state is None:
                continue
            out[concept] = out.get(concept, True) and state
    return out


def recompute_layers(text: str | None) -> str | None:
    """Which blocks a text says are checkpointed, as the job's --recompute-layers value ('14 of 28 layers' -> '14/28',
    'every 2nd decoder layer' -> 'every-2'), from the first clause that states the recompute_layer_fraction concept
    (a count wins over an every-N in the same clause); None when no clause does."""
    if not text:
        return None
    for clause in re.split(r"[;+\n]|\.\s", text.lower()):
        if clause_state(clause, _LAYER_FRACTION_WORDS) is not True:
            continue
        m = re.search(r"(\d+) ?(?:of|out of|/) ?(\d+) " + _BLOCK, clause)
        if m and 0 < int(m.group(1)) <= int(m.group(2)):
            return f"{int(m.group(1))}/{int(m.group(2))}"
        m = re.search(rf"every ({_ORDINAL}) {_BLOCK}", clause)
        if m:
            word = m.group(1)
            n = _ORDINAL_WORDS.get(word) or int(re.match(r"\d+", word).group(0))
            if n >= 1:
                return f"every-{n}"
    return None


def says(text: str | None, concept: str) -> bool:
    """The text states the concept (and no clause denies it)."""
    return mentions(text).get(concept) is True
