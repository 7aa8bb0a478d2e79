"""Entry point: build the parser, dispatch, and turn errors into one line and an exit code.

Building the parser imports only the command modules and the options dataclasses (standard
library): a command's heavy imports (torch, transformers) happen when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Optional, Sequence

from .._version import __version__
from ..errors import SpuriousDiagError

# One module per command, in the order ``--help`` lists them.
COMMANDS = ("demo", "figures", "audit", "diagnose", "train", "compare", "pretrain", "layers", "convert")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spurious-diag",
        description="Diagnose spurious forgetting in fine-tuned language models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="torch CPU threads (1 is often fastest for small models on a busy machine)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}_cmd").add_parser(sub)
    return parser


def _quiet_libraries() -> None:
    """transformers' own progress bars and chatter off, here and (through the environment) in the
    worker processes a command starts. Ours (tqdm.auto) stay."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # already imported (the CLI called in-process): tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    for noisy in ("transformers", "huggingface_hub", "accelerate", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the process exit code (see ``spurious_diag.errors``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.debug:
        _quiet_libraries()
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        return int(args.run(args) or 0)
    except SpuriousDiagError as exc:
        if args.debug:
            raise
        print(f"spurious-diag {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"spurious-diag {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"spurious-diag {args.command}: internal error: {type(exc).__name__}: {first} (rerun with --debug)",
            file=sys.stderr,
        )
        return 1


def console_main() -> None:
    """``console_scripts`` entry point."""
    sys.exit(main())
