"""How a diagnosis runs: :class:`DiagnoseOptions`, :class:`RecoverySettings` and :class:`VerdictRules`.

Each is checked once when it is built. Standard library only, so that the command line can build
its flags from these fields without importing torch (``spurious-diag diagnose --help``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from ..errors import UsageError

__all__ = ["PROBES", "RecoverySettings", "VerdictRules", "DiagnoseOptions", "parse_probes", "parse_int_list"]

PROBES = ("recovery", "format", "linear", "grafting", "shift", "geometry")
# = spurious_diag.devices.MODEL_DTYPES (this module is standard library only).
MODEL_DTYPES = ("float32", "bfloat16", "float16")


def parse_probes(text: str) -> tuple[str, ...]:
    """Comma-separated probe names.

    >>> parse_probes("recovery, grafting")
    ('recovery', 'grafting')
    """
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse_int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers.

    >>> parse_int_list("10,50, 100")
    (10, 50, 100)
    """
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"expected comma-separated integers, got {text!r}") from None


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class RecoverySettings:
    """How to recover. Defaults: DESIGN.md §5's pilot (40 AdamW steps at lr 1e-4, batch 32).

    Attributes:
        ns: numbers of recovery examples tried (each run starts again from the unrecovered model).
        steps, lr, batch_size: the fine-tune (batch capped at n); identical for model and control.
        weight_decay: AdamW weight decay.
        seed: the order of the example pool (the n examples are its first n, so smaller sets
            are subsets of larger ones) and the Trainer seed.

    Raises:
        UsageError: a value out of range.
    """

    ns: tuple[int, ...] = field(default=(10, 50, 100), metadata={
        "help": "recovery example counts", "flag": "--recovery-n", "parse": parse_int_list, "metavar": "N,N,..."})
    steps: int = field(default=40, metadata={"help": "recovery fine-tune steps"})
    lr: float = field(default=1e-4, metadata={"help": "recovery learning rate"})
    batch_size: int = field(default=32, metadata={"help": "recovery batch size", "flag": "--recovery-batch"})
    weight_decay: float = field(default=0.0, metadata={"cli": False})
    seed: int = field(default=0, metadata={"cli": False})

    def __post_init__(self) -> None:
        object.__setattr__(self, "ns", tuple(self.ns))
        if not self.ns:
            raise UsageError("recovery needs at least one example count n")
        for n in self.ns:
            _positive("every recovery n", n)
        _positive("recovery steps", self.steps)
        _positive("recovery batch_size", self.batch_size)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"recovery lr must be a positive number, got {self.lr}")
        if not self.weight_decay >= 0:
            raise UsageError(f"recovery weight_decay must be >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ns"] = list(self.ns)
        return out


@dataclass(frozen=True)
class VerdictRules:
    """Thresholds of the verdict's rules (:mod:`.rules`). Accuracies are fractions in [0, 1]."""

    min_drop: float = 0.20
    recovery_min_fraction: float = 0.40
    recovery_min_margin: float = 0.20
    recovery_max_margin_real: float = 0.10
    pretraining_intact_ratio: float = 0.80
    pretraining_collapsed_ratio: float = 0.50
    min_pretraining_before: float = 0.30

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class DiagnoseOptions:
    """What :func:`~.diagnose.diagnose` runs and how.

    Attributes:
        probes: which of :data:`PROBES` to run.
        recovery: recovery settings (lr, steps, n; the same for the control).
        rules: thresholds of the verdict.
        test_fraction: the held-out share of individuals when the old-task records are split.
        seed: the split, recovery and probe seed.
        max_candidates: candidate-pool cap of the format probe's ranking (None: whole pool).
        format_rank: the format probe also ranks the truth among the candidates (``top1``; one
            forward per candidate, most of the probe's cost); False scores exact match alone.
        linear_test_fraction: the linear probes' own person-disjoint test share.
        compute_audit: run an audit (rank ``audit_rank``) when no audit result is given.
        audit_rank: singular vectors per update of that audit.
        restore: the grafting restoration fraction that counts as "most".
        graft_ks: the graft depths k to try (default all of 0..L; thin out for deep models).
        graft_top: also graft the top k blocks (the arm that tells "bottom" from "anywhere");
            False runs the bottom arm alone, which is all the recommendation reads (half the cost).
        map_layers: the layers of a run's forgetting map (−1 embeddings … L head; default all;
            thin out for deep models).
        eval_batch_size: sequences per forward pass when scoring.
        device: where the models given as paths are loaded, scored and recovered (``cuda`` where
            there is none is a usage error); model objects are used where they are.
        dtype: the dtype of the models loaded from paths (one of ``MODEL_DTYPES``).

    Raises:
        UsageError: an unknown probe, or a value out of range.
    """

    probes: tuple[str, ...] = field(default=PROBES, metadata={
        "help": f"comma-separated subset of {','.join(PROBES)}", "parse": parse_probes})
    recovery: RecoverySettings = field(default=RecoverySettings(), metadata={"prefix": "recovery-"})
    rules: VerdictRules = field(default=VerdictRules(), metadata={"cli": False})
    test_fraction: float = field(default=0.5, metadata={"help": "held-out share of individuals"})
    seed: int = field(default=0, metadata={"help": "split, recovery and probe seed"})
    max_candidates: Optional[int] = field(default=20, metadata={
        "help": "format probe: rank the truth among at most this many pool values (0: the whole pool)"})
    format_rank: bool = field(default=True, metadata={"cli": False})
    linear_test_fraction: float = field(default=0.3, metadata={"cli": False})
    compute_audit: bool = field(default=True, metadata={"cli": False})
    audit_rank: int = field(default=8, metadata={"cli": False})
    restore: float = field(default=0.5, metadata={"cli": False})
    graft_ks: Optional[tuple[int, ...]] = field(default=None, metadata={
        "help": "graft depths to try (default every k in 0..L; thin out for deep models)", "parse": parse_int_list,
        "metavar": "K,K,..."})
    graft_top: bool = field(default=True, metadata={"cli": False})
    map_layers: Optional[tuple[int, ...]] = field(default=None, metadata={
        "help": "with a run directory: the forgetting map's layers (-1 embeddings ... L head; default all)",
        "parse": parse_int_list, "metavar": "L,L,..."})
    eval_batch_size: int = field(default=64, metadata={"cli": False})  # = training.evaluate.EVAL_BATCH_SIZE
    device: str = field(default="cpu", metadata={"help": "where the probes run: cpu (default) or cuda (choose the GPU with CUDA_VISIBLE_DEVICES)"})
    dtype: str = field(default="float32", metadata={
        "help": "the dtype models are loaded in (bfloat16 halves the memory on a GPU)", "choices": MODEL_DTYPES})

    def __post_init__(self) -> None:
        object.__setattr__(self, "probes", tuple(self.probes))
        if self.dtype not in MODEL_DTYPES:
            raise UsageError(f"dtype must be one of {MODEL_DTYPES}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not self.device:
            raise UsageError(f"device must be a device name such as cpu or cuda, got {self.device!r}")
        unknown = [p for p in self.probes if p not in PROBES]
        if unknown or not self.probes:
            raise UsageError(f"unknown probes {unknown or list(self.probes)}; choose from {list(PROBES)}")
        for name in ("test_fraction", "linear_test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise UsageError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.max_candidates == 0:  # the command line's "the whole pool"
            object.__setattr__(self, "max_candidates", None)
        if self.max_candidates is not None and self.max_candidates < 2:
            raise UsageError(f"max_candidates must be >= 2 (or 0/None for the whole pool), got {self.max_candidates}")
        _positive("audit_rank", self.audit_rank)
        _positive("eval_batch_size", self.eval_batch_size)
        if not 0.0 < self.restore <= 1.0:
            raise UsageError(f"restore must be in (0, 1], got {self.restore}")
        if self.map_layers is not None:
            object.__setattr__(self, "map_layers", tuple(self.map_layers))
            if not self.map_layers or any(layer < -1 for layer in self.map_layers):
                raise UsageError(f"map layers must be >= -1, got {list(self.map_layers)}")
        if self.graft_ks is not None:
            object.__setattr__(self, "graft_ks", tuple(self.graft_ks))
            if any(k < 0 for k in self.graft_ks):
                raise UsageError(f"graft depths must be >= 0, got {list(self.graft_ks)}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as ``summary.json`` records them."""
        return {"rules": self.rules.to_dict(), "recovery": self.recovery.to_dict(), "probes": list(self.probes),
                "test_fraction": self.test_fraction, "seed": self.seed, "max_candidates": self.max_candidates,
                "format_rank": self.format_rank,
                "linear_test_fraction": self.linear_test_fraction, "restore": self.restore, "graft_top": self.graft_top,
                "device": self.device,
                "dtype": self.dtype}
