"""Text-answer rewards: OCR by word error rate, free-form by ROUGE-L, regression by relative error.

WER comes from jiwer and ROUGE-L from Google's rouge-score (the implementation Video-R1 scores with),
not from hand-written copies.
"""
from __future__ import annotations

from functools import lru_cache

from engine.reward.numeric import answer_numbers
from engine.reward.parse import extract_answer


def ocr_reward(response: str, answer: str) -> float:
    """1 - word error rate of the <answer> against the ground truth, clipped to [0, 1]; 0 without an answer."""
    import jiwer

    got = extract_answer(response)
    if got is None or not answer.strip():
        return 0.0
    if not got.strip():
        return 0.0
    return max(0.0, min(1.0, 1.0 - jiwer.wer(answer.strip(), got.strip())))


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def free_form_reward(response: str, answer: str) -> float:
    """ROUGE-L F-measure (stemmed) between the <answer> and the ground truth; 0 without an answer."""
    got = extract_answer(response)
    if got is None or not got.strip():
        return 0.0
    return float(_rouge().score(answer, got)["rougeL"].fmeasure)


def regression_reward(response: str, answer: str) -> float:
    """1 - |got - want| / |want|, clipped to [0, 1] (exact answers of 0 need an exact 0)."""
    want, got = answer_numbers(response, answer)
    if got is None:
        return 0.0
    if want == 0:
        return 1.0 if got == 0 else 0.0
    return max(0.0, 1.0 - abs(got - want) / abs(want))
