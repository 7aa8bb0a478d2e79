"""Probes that tell spurious forgetting (alignment lost, knowledge kept) from real forgetting.

One module per probe, each working on any HF causal LM and prompt/completion records
(DESIGN.md §3): :mod:`.recovery`, :mod:`.format_probe`, :mod:`.linear_probe`, :mod:`.grafting`,
:mod:`.residual_shift` (math in :mod:`.similarity`), :mod:`.chat_alignment` (a chat model's
turn-ending and correctness); the verdict's rules (:mod:`.rules`), the
freeze-depth recommendation (:mod:`.recommend`) and :func:`diagnose` (:mod:`.verdict`) on top.
"""

from .chat_alignment import ChatAlignmentResult, ChatQuestion, answer_in, chat_alignment, chat_prompt
from .format_probe import FormatProbeResult, candidate_ranks, format_probe
from .grafting import GraftReport, embeddings_tied_to_head, graft, grafting_curve
from .hidden import last_prompt_hidden_states
from .linear_probe import linear_probe, probe_accuracy
from .recommend import FreezeRecommendation, recommend_freeze_depth
from .records import ProbeRecord, as_probe_records, split_by_person
from .recovery import RecoveryResult, RecoverySettings, recovery_fraction, run_recovery
from .residual_shift import compare_hidden_states, residual_shift
from .rules import RuleOutcome, VerdictInputs, VerdictRules, decide
from .similarity import debiased_linear_cka, first_pc_angle_deg, linear_cka, mean_shift_rel, unbiased_hsic
from .verdict import PROBES, Diagnosis, diagnose

__all__ = [
    "ProbeRecord", "as_probe_records", "split_by_person",
    "RecoverySettings", "RecoveryResult", "recovery_fraction", "run_recovery",
    "FormatProbeResult", "candidate_ranks", "format_probe",
    "ChatQuestion", "ChatAlignmentResult", "chat_prompt", "answer_in", "chat_alignment",
    "last_prompt_hidden_states", "linear_probe", "probe_accuracy",
    "GraftReport", "graft", "grafting_curve", "embeddings_tied_to_head",
    "linear_cka", "debiased_linear_cka", "unbiased_hsic", "mean_shift_rel", "first_pc_angle_deg",
    "compare_hidden_states", "residual_shift",
    "VerdictRules", "VerdictInputs", "RuleOutcome", "decide",
    "FreezeRecommendation", "recommend_freeze_depth",
    "PROBES", "Diagnosis", "diagnose",
]
