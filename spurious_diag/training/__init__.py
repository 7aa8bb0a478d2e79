"""Training and evaluating any HF causal LM on prompt/completion records (used by every scenario)."""

from .checkpoints import ResumableCallback, complete_checkpoints, last_checkpoint
from .evaluate import EvalResult, evaluate_records, score_records
from .records import IGNORE_INDEX, EncodedExample, encode_qa, encode_records, encode_text, read_records
from .trainer import EvaluateEveryCallback, PaddingCollator, TrainingResult, train_model

__all__ = [
    "IGNORE_INDEX",
    "EncodedExample",
    "encode_qa",
    "encode_text",
    "encode_records",
    "read_records",
    "PaddingCollator",
    "EvaluateEveryCallback",
    "TrainingResult",
    "train_model",
    "ResumableCallback",
    "complete_checkpoints",
    "last_checkpoint",
    "EvalResult",
    "score_records",
    "evaluate_records",
]
