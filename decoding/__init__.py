"""Mode search over any LanguageModel: greedy, beam, exact (certified), length-conditional and conditional beam
search, sampling."""

from decoding.attributes import (
    And,
    Attribute,
    Classifier,
    Length,
    LengthRange,
    LengthRatio,
    Not,
    NotDegenerate,
    Or,
    RewardAbove,
)
from decoding.beam import beam_search
from decoding.conditional_beam import conditional_beam_search
from decoding.constraints import BannedTokens, Constraint, MaxLength, MinLength, NoRepeatNgram, NotCopyOfSource
from decoding.exact import exact_search
from decoding.greedy import greedy_search
from decoding.length_conditional import length_conditional_modes
from decoding.protocol import HiddenStates, LanguageModel
from decoding.sampling import sample
from decoding.scorers import LengthReward, Scorer
from decoding.toy import ExactClassifier, NGramLM, TabularLM
from decoding.types import Hypothesis, NonFiniteLogProbError, SearchInputError, SearchResult, SearchStats

__all__ = [
    "And", "Attribute", "BannedTokens", "Classifier", "Constraint", "ExactClassifier", "HiddenStates", "Hypothesis",
    "LanguageModel", "Length", "LengthRange", "LengthRatio", "LengthReward", "MaxLength", "MinLength", "NGramLM",
    "NoRepeatNgram",
    "NonFiniteLogProbError", "Not", "NotCopyOfSource", "NotDegenerate", "Or", "RewardAbove", "Scorer",
    "SearchInputError", "SearchResult", "SearchStats", "TabularLM", "beam_search", "conditional_beam_search",
    "exact_search", "greedy_search", "length_conditional_modes", "sample",
]
