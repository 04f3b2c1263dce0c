"""The prose table reads published wording into job fields, with negation and whole-word matching (issue 11:
'untied' is not 'tied', an fp32 reduction is not an fp32 run, 'no sequence parallelism' is off, 'bnb' alone is not
8-bit Adam). Expected values are what the sentences say, read by a person."""

import pytest

from sizeup.core.types import Optimizer, Precision
from sizeup.validate.mapping import parse_optimizer, parse_precision, parse_recompute
from sizeup.validate.prose import mentions, says


@pytest.mark.parametrize("text, concept, expected", [
    ("no sequence parallelism", "sequence_parallel", False),
    ("TP=8 with sequence parallelism", "sequence_parallel", True),
    ("sequence_parallel=False", "sequence_parallel", False),
    ("untied embeddings", "tied_embeddings", None),
    ("tied embeddings", "tied_embeddings", True),
    ("embeddings not tied", "tied_embeddings", False),
    ("compile: false", "compile", False),
    ("torch.compile on", "compile", True),
    ("without torch.compile", "compile", False),
])
def test_mentions(text, concept, expected):
    assert mentions(text).get(concept) is expected


def test_fp32_in_a_mixed_recipe_is_not_an_fp32_run():
    assert parse_precision("bf16 mixed precision, fp32 gradient reduction") == Precision.BF16_MIXED
    assert parse_precision("fp32") == Precision.FP32
    assert parse_precision("bf16 with fp32 master weights") == Precision.BF16_MIXED


def test_bnb_alone_is_not_8bit_adam():
    assert parse_optimizer("AdamW (bnb installed)") == Optimizer.ADAMW
    assert parse_optimizer("bnb 8-bit AdamW") == Optimizer.ADAM8BIT
    assert parse_optimizer("paged_adamw_8bit") == Optimizer.ADAM8BIT


def test_negated_sequence_parallelism_in_the_recompute_text():
    assert parse_recompute("selective recompute, no sequence parallelism")[1] is False
    assert parse_recompute("selective recompute + sequence parallelism")[1] is True


def test_says_needs_no_denial():
    assert says("paged AdamW", "paged") and not says("not paged", "paged")
