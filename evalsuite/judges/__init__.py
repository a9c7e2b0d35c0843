"""LLM judges: backends (an OpenAI-compatible server, a local causal LM), prompt templates, verdicts
read from the answer token's probabilities, and SuperICL prompts that carry small models' verdicts.

The registered metric ``llm_judge`` (:mod:`metrics.llm_judge`) puts them behind the same config,
cache and error handling as every metric.
"""

from evalsuite.judges.backends import BackendStats, JudgeBackend, JudgeReply, JudgeRequest, TokenChoice
from evalsuite.judges.http import OpenAICompatibleBackend
from evalsuite.judges.judge import Judge, SuperICL, Verdict
from evalsuite.judges.local import LocalBackend
from evalsuite.judges.supericl import (
    ConfidenceCalibrator,
    InContextExample,
    PluginPrediction,
    check_out_of_fold,
    supericl_prompt,
)
from evalsuite.judges.templates import BUILTIN_TEMPLATES, JudgeTemplate, load_template

__all__ = [
    "BUILTIN_TEMPLATES",
    "BackendStats",
    "ConfidenceCalibrator",
    "InContextExample",
    "Judge",
    "JudgeBackend",
    "JudgeReply",
    "JudgeRequest",
    "JudgeTemplate",
    "LocalBackend",
    "OpenAICompatibleBackend",
    "PluginPrediction",
    "SuperICL",
    "TokenChoice",
    "Verdict",
    "check_out_of_fold",
    "load_template",
    "supericl_prompt",
]
