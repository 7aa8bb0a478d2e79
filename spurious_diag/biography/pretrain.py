"""Pretraining the Biography base model from scratch, saving it, and loading it back.

The base model is a tiny Llama (:mod:`.model`) trained on the biographies of the pretraining
people (Task 0 train, validation and test; never the Task 1 people) with the loss on every
token. Its directory holds the HF model (``config.json``, ``model.safetensors``), the
tokenizer, and ``biography_manifest.json``: the scenario manifest (seed, sizes, SHA-256 of the
generated records) and the pretraining settings and outcome, so the exact data can be
regenerated and checked. The package ships one in ``spurious_diag/biography/data/base/``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
import transformers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback

from ..errors import CheckpointNotFoundError, InvalidDataError
from ..outputs import staged_dir
from ..training.settings import TrainSettings
from ..training.trainer import train_model
from .defaults import PRETRAINING, ModelShape
from .model import biography_config, build_model, count_parameters
from .scenario import BiographyData, scenario_from_manifest
from .tokenizer import build_tokenizer, load_tokenizer

__all__ = ["MANIFEST_NAME", "PRETRAINING", "BaseModel", "pretrain_base_model", "save_base_model", "load_base_model",
           "shipped_base_dir"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "biography_manifest.json"
MANIFEST_SCHEMA_VERSION = 1

PathArg = Union[str, "os.PathLike[str]"]


@dataclass
class BaseModel:
    """A pretrained Biography model with its tokenizer and manifest (a JSON-able dict)."""

    model: LlamaForCausalLM = field(repr=False)
    tokenizer: PreTrainedTokenizerFast = field(repr=False)
    manifest: dict[str, Any]

    def scenario(self, *, verify: bool = True) -> BiographyData:
        """Regenerate the scenario the model was pretrained on (hash-checked with ``verify``)."""
        return scenario_from_manifest(self.manifest["scenario"], verify=verify)


def shipped_base_dir() -> Path:
    """Directory of the base model shipped with the package."""
    return Path(__file__).resolve().parent / "data" / "base"


def pretrain_base_model(
    scenario: BiographyData,
    settings: TrainSettings = PRETRAINING,
    *,
    seed: int = 0,
    shape: ModelShape = ModelShape(),
    callbacks: Sequence[TrainerCallback] = (),
    progress: bool = False,
) -> BaseModel:
    """Pretrain a tiny Llama from scratch on the scenario's biographies.

    The tokenizer is built over ``scenario.corpus_texts()`` (all splits, so Task 1 values have
    tokens); the model is initialized with ``seed`` and trained with AdamW.

    Args:
        scenario: the generated data; only its pretraining biographies are trained on.
        settings: the training (default :data:`PRETRAINING`, the shipped base model's).
        seed: model initialization and batch order.
        shape: the model's depth, width and heads (:class:`~.defaults.ModelShape`).
        callbacks: extra Trainer callbacks (e.g. periodic probes).
        progress: show a progress bar.

    Returns:
        :class:`BaseModel` in eval mode; save it with :func:`save_base_model`.
    """
    tokenizer = build_tokenizer(scenario.corpus_texts())
    num_layers, hidden_size, num_heads = shape.num_layers, shape.hidden_size, shape.num_heads
    config = biography_config(tokenizer, num_layers=num_layers, hidden_size=hidden_size, num_heads=num_heads)
    model = build_model(config, seed=seed)
    n_params = count_parameters(model)
    logger.info("pretraining %d-block hidden-%d Llama (%d parameters) on %d biographies, %d steps",
                num_layers, hidden_size, n_params, len(scenario.biographies), settings.steps)
    records = [{"text": text} for text in scenario.pretraining_texts()]
    result = train_model(model, tokenizer, records, settings, seed=seed, callbacks=callbacks, progress=progress)
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "kind": "biography_base_model",
        "scenario": scenario.manifest(),
        "pretraining": {
            "steps": result.steps,
            "seed": seed,
            "lr": settings.lr,
            "batch_size": settings.batch_size,
            "schedule": settings.schedule,
            "warmup_steps": settings.warmup_steps,
            "min_lr_ratio": settings.min_lr_ratio,
            "weight_decay": settings.weight_decay,
            "optimizer": settings.optimizer,
            "epochs": result.steps * settings.batch_size / max(len(scenario.biographies), 1),
            "final_loss": result.final_loss,
            "loss_curve": [[int(s), float(v)] for s, v in zip(result.losses["step"], result.losses["loss"])],
            "runtime_s": result.runtime_s,
            "seconds_per_step": result.seconds_per_step,
            "torch_threads": torch.get_num_threads(),
        },
        "model": {
            "architecture": "LlamaForCausalLM",
            "num_layers": num_layers,
            "hidden_size": hidden_size,
            "num_heads": num_heads,
            "intermediate_size": config.intermediate_size,
            "vocab_size": config.vocab_size,
            "tie_word_embeddings": False,
            "parameters": n_params,
        },
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }
    logger.info("pretraining done: final loss %.4f, %.3f s/step", result.final_loss, result.seconds_per_step)
    return BaseModel(model, tokenizer, manifest)


def save_base_model(base: BaseModel, out_dir: PathArg, *, overwrite: bool = False) -> Path:
    """Write model (safetensors), tokenizer and ``biography_manifest.json`` to ``out_dir``.

    Built in a staging directory and renamed into place.

    Raises:
        OutputDirError: ``out_dir`` is not empty and ``overwrite`` is False.
    """
    with staged_dir(os.fspath(out_dir), overwrite=overwrite) as staging:
        base.model.save_pretrained(staging, safe_serialization=True)
        base.tokenizer.save_pretrained(staging)
        Path(staging, MANIFEST_NAME).write_text(json.dumps(base.manifest, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


def read_base_manifest(directory: PathArg) -> dict:
    """The manifest of a saved base model directory (cheap: no weights are read).

    Raises:
        CheckpointNotFoundError: ``directory`` lacks the manifest.
        InvalidDataError: the manifest is not valid JSON or of another kind.
    """
    manifest_path = Path(directory) / MANIFEST_NAME
    if not manifest_path.is_file():
        raise CheckpointNotFoundError(f"no {MANIFEST_NAME}: not a Biography base model directory", Path(directory))
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidDataError(f"manifest is not JSON ({exc.msg})", manifest_path) from None
    if manifest.get("kind") != "biography_base_model":
        raise InvalidDataError(f"manifest kind is {manifest.get('kind')!r}, not 'biography_base_model'", manifest_path)
    return manifest


def load_base_model(path: Optional[PathArg] = None) -> BaseModel:
    """Load a saved base model (default: the shipped one), fp32, eval mode.

    Raises:
        CheckpointNotFoundError: ``path`` lacks the manifest or the model files.
        InvalidDataError: the manifest is not valid JSON or of another kind.
    """
    directory = Path(path) if path is not None else shipped_base_dir()
    manifest = read_base_manifest(directory)
    tokenizer = load_tokenizer(directory)
    model = LlamaForCausalLM.from_pretrained(os.fspath(directory), dtype=torch.float32, local_files_only=True)
    return BaseModel(model.eval(), tokenizer, manifest)
