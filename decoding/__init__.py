"""Mode search over any LanguageModel: greedy, beam, exact (certified) and length-conditional search, sampling."""

from decoding.beam import beam_search
from decoding.constraints import BannedTokens, Constraint, MaxLength, MinLength, NoRepeatNgram, NotCopyOfSource
from decoding.exact import exact_search
from decoding.greedy import greedy_search
from decoding.length_conditional import length_conditional_modes
from decoding.protocol import LanguageModel
from decoding.sampling import sample
from decoding.scorers import LengthReward, Scorer
from decoding.toy import NGramLM, TabularLM
from decoding.types import Hypothesis, NonFiniteLogProbError, SearchInputError, SearchResult, SearchStats

__all__ = [
    "BannedTokens", "Constraint", "Hypothesis", "LanguageModel", "LengthReward", "MaxLength", "MinLength",
    "NGramLM", "NoRepeatNgram", "NonFiniteLogProbError", "NotCopyOfSource", "Scorer", "SearchInputError",
    "SearchResult", "SearchStats", "TabularLM", "beam_search", "exact_search", "greedy_search",
    "length_conditional_modes", "sample",
]
