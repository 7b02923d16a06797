"""The ``mi-margin`` command line: train, info, report, zoo, demo, sweep, study (over the same
dataclasses as the API).

Options that belong to one task or one model (``--group``, ``--p``, ``--n``; ``--d-model``,
``--input-style``...) are refused with another task or model instead of being silently ignored,
and ``--task group_composition`` needs ``--group``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mi_margin.errors import MiMarginError
from mi_margin.models import HookedMLP, HookedOneLayerTransformer, MLPConfig, TransformerConfig
from mi_margin.tasks import TASKS, ModularAddition, Task, from_dict
from mi_margin.tasks.operations import OPERATIONS
from mi_margin.training import TrainConfig, load_run, resume, train


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (or the help text gives it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


#: options that apply to some tasks or models only: dest -> (the --task/--model values it applies
#: to, its default there or None when it must be given)
SCOPED: dict[str, tuple[tuple[str, ...], Any]] = {
    "p": (("modular_addition", "modular_operation"), 113), "op": (("modular_operation",), "multiply"),
    "group": (("group_composition",), None), "n": (("sparse_parity",), 10),
    "d_model": (("transformer",), 128), "n_heads": (("transformer",), 4),
    "d_head": (("transformer",), 32), "input_style": (("mlp",), "theory"), "d_embed": (("mlp",), 256),
}


def _task_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task")
    g.add_argument("--task", choices=list(TASKS), default=ModularAddition.kind, help="what to learn")
    g.add_argument("--p", type=int, default=None,
                   help="modulus, modular addition and operations only (default: 113)")
    g.add_argument("--op", choices=list(OPERATIONS), default=None,
                   help="operation mod p, modular_operation only (Power et al. 2022; default: multiply)")
    g.add_argument("--k", type=int, default=2, help="operands (addition/groups) or parity degree")
    g.add_argument("--group", default=None,
                   help="group name, group_composition only (required), e.g. S4, S5, D7, C2xC3")
    g.add_argument("--n", type=int, default=None, help="number of bits, sparse parity only (default: 10)")
    g.add_argument("--train-fraction", type=float, default=0.3,
                   help="share of the inputs trained on")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the train/test split")


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=["transformer", "mlp"], default="transformer",
                   help="one-layer transformer or one-hidden-layer MLP")
    g.add_argument("--d-model", type=int, default=None,
                   help="residual width, transformer only (default: 128)")
    g.add_argument("--n-heads", type=int, default=None, help="attention heads, transformer only (default: 4)")
    g.add_argument("--d-head", type=int, default=None, help="head width, transformer only (default: 32)")
    g.add_argument("--d-mlp", type=int, default=512, help="hidden width")
    g.add_argument("--act-fn", choices=["relu", "gelu", "quadratic", "power"], default=None,
                   help="default: relu for transformers, quadratic for MLPs")
    g.add_argument("--input-style", choices=["theory", "embed"], default=None,
                   help="MLP only (default: theory)")
    g.add_argument("--d-embed", type=int, default=None,
                   help="embedding width, MLP with --input-style embed only (default: 256)")
    g.add_argument("--biases", action="store_true", help="trainable biases (off by default)")
    g.add_argument("--model-seed", type=int, default=0, help="seed of the initial weights")


def check_scoped(args: argparse.Namespace) -> argparse.Namespace:
    """Refuse options of another task or model; fill the defaults of the ones that apply."""
    chosen = {args.task, args.model}
    if args.d_embed is not None and args.model == "mlp" and args.input_style != "embed":
        raise MiMarginError(f"--d-embed {args.d_embed} applies to --input-style embed only")
    for dest, (scopes, default) in SCOPED.items():
        flag, value = "--" + dest.replace("_", "-"), getattr(args, dest)
        applies = bool(set(scopes) & chosen)
        if value is not None and not applies:
            which = "--model" if scopes[0] in ("transformer", "mlp") else "--task"
            raise MiMarginError(f"{flag} {value} applies to {which} {' or '.join(scopes)} only, "
                                f"not to --task {args.task} --model {args.model}")
        if value is None and applies:
            if default is None:
                raise MiMarginError(f"{flag} is required with --task {scopes[0]}, e.g. {flag} S4")
            setattr(args, dest, default)
    return args


#: ``train``'s step count when --steps is not given (a resumed run keeps its own)
DEFAULT_STEPS = 10_000


def _train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=None,
                   help=f"training steps (default {DEFAULT_STEPS:,}; with --resume, the run's own)")
    g.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    g.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw", help="optimizer")
    g.add_argument("--weight-decay", type=float, default=1.0, help="weight decay")
    g.add_argument("--norm-penalty", type=float, default=0.0, help="λ of the L_{2,ν} penalty")
    g.add_argument("--batch-size", type=int, default=None,
                   help="minibatch size (default: full batch)")
    g.add_argument("--eval-every", type=int, default=100,
                   help="steps between evaluations (history rows)")
    g.add_argument("--checkpoint-schedule", choices=["log", "linear", "none"], default="log",
                   help="which steps keep weights: log-spaced, evenly spaced (what grokking "
                        "curves need, docs/mathematics.md §4.3) or none (initial and final only)")
    g.add_argument("--n-checkpoints", type=int, default=20,
                   help="intervals of the checkpoint schedule: the weights at step 0, at the end "
                   "and at N-1 steps between are kept (fewer where log-spaced steps coincide)")
    g.add_argument("--target-test-acc", type=float, default=None,
                   help="stop once the test accuracy reaches it (default: run all steps)")
    g.add_argument("--seed", type=int, default=0, help="minibatch order seed")


def build_task(args: argparse.Namespace) -> Task:
    """The ``--task`` kind built from the options its constructor takes (``Task.ARGS``)."""
    given = {name: getattr(args, name) for name in TASKS[args.task].ARGS if hasattr(args, name)}
    return from_dict({"kind": args.task, **given, "train_fraction": args.train_fraction,
                      "seed": args.data_seed})


def build_model(args: argparse.Namespace, task: Any) -> Any:
    if args.model == "transformer":
        return HookedOneLayerTransformer(TransformerConfig.for_task(
            task, d_model=args.d_model, n_heads=args.n_heads, d_head=args.d_head,
            d_mlp=args.d_mlp, act_fn=args.act_fn or "relu", use_biases=args.biases,
            seed=args.model_seed))
    return HookedMLP(MLPConfig.for_task(
        task, d_mlp=args.d_mlp, act_fn=args.act_fn or "quadratic", input_style=args.input_style,
        d_embed=args.d_embed, use_biases=args.biases, seed=args.model_seed))


def build_train_config(args: argparse.Namespace) -> Any:
    steps = DEFAULT_STEPS if args.steps is None else args.steps
    return TrainConfig(steps=steps, lr=args.lr, optimizer=args.optimizer,
                       weight_decay=args.weight_decay, norm_penalty=args.norm_penalty,
                       batch_size=args.batch_size, eval_every=args.eval_every,
                       checkpoint_schedule=args.checkpoint_schedule,
                       n_checkpoints=args.n_checkpoints, target_test_acc=args.target_test_acc,
                       seed=args.seed)


#: the ``train`` flags that describe a run, by where the run keeps them: dest -> (part, field)
RUN_FIELDS: dict[str, tuple[str, str]] = {
    "task": ("task", "kind"), "p": ("task", "p"), "op": ("task", "op"), "k": ("task", "k"),
    "group": ("task", "group"), "n": ("task", "n"), "train_fraction": ("task", "train_fraction"),
    "data_seed": ("task", "seed"), "model": ("model", "kind"), "d_model": ("model", "d_model"),
    "n_heads": ("model", "n_heads"), "d_head": ("model", "d_head"), "d_mlp": ("model", "d_mlp"),
    "act_fn": ("model", "act_fn"), "input_style": ("model", "input_style"),
    "d_embed": ("model", "d_embed"), "biases": ("model", "use_biases"),
    "model_seed": ("model", "seed"), **{name: ("train", name) for name in (
        "lr", "optimizer", "weight_decay", "norm_penalty", "batch_size", "eval_every",
        "checkpoint_schedule", "n_checkpoints", "target_test_acc", "seed")},
}


def stored_value(run: Any, part: str, field: str) -> Any:
    """What the run in a folder keeps for one of :data:`RUN_FIELDS`."""
    if part == "task":
        return run.task.to_dict().get(field)
    if part == "model" and field == "kind":
        return "transformer" if isinstance(run.model, HookedOneLayerTransformer) else "mlp"
    return getattr(run.model.cfg if part == "model" else run.config, field, None)


def check_resumable(run: Any, out: Path, given: set[str], args: argparse.Namespace) -> None:
    """Refuse ``--resume`` with a flag that says other than ``run``, loaded from ``out``: the
    resumed run keeps its own task, model and training settings, so such a flag would be
    ignored. Flags equal to the run's own pass, so that the command that started a run, with
    ``--resume`` added, continues it."""
    differ = [dest for dest in sorted(given & RUN_FIELDS.keys())
              if getattr(args, dest) != stored_value(run, *RUN_FIELDS[dest])]
    if differ:
        said = ", ".join(f"--{dest.replace('_', '-')} {getattr(args, dest)} (the run's "
                         f"{field if field != 'kind' else part}: {stored_value(run, part, field)})"
                         for dest in differ for part, field in [RUN_FIELDS[dest]])
        raise MiMarginError(f"--resume continues the run in {out} with its own settings, and "
                            f"{said} would be ignored; resume with --out {out} --resume "
                            f"[--steps N] alone, or train another run with --overwrite or "
                            f"another --out")


def cmd_train(args: argparse.Namespace, given: Iterable[str] = ()) -> int:
    """``mi-margin train``; ``given`` holds the flags given on the command line (their dests)."""
    out = Path(args.out)
    start = time.perf_counter()
    before = 0
    if args.resume:  # the task, model and training settings are the run's own
        stored = load_run(out)                         # loaded once: checked, then resumed
        check_resumable(stored, out, set(given), args)
        before = stored.step
        run = resume(stored, steps=args.steps)
    else:
        task = build_task(check_scoped(args))
        model = build_model(args, task)
        run = train(model, task, build_train_config(args), out_dir=out, overwrite=args.overwrite)
    print(f"trained {run.step - before} steps (to step {run.step}) in "
          f"{time.perf_counter() - start:.1f} s; "
          f"status {run.status}; run folder: {out.resolve()}")
    _print_summary(run)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    run = load_run(args.run)
    print(f"{run!r}")
    print(f"model config: {json.dumps(run.model.cfg.to_dict())}")
    print(f"train config: {json.dumps(run.config.to_dict())}")
    print(f"checkpoints: {sorted(run.checkpoints)}")
    _print_summary(run)
    return 0


def _print_summary(run: Any) -> None:
    if len(run.history):
        last = run.history.iloc[-1]
        print(f"step {int(last['step'])}: train loss {last['train_loss']:.3g} "
              f"(acc {last['train_acc']:.3f}), test loss {last['test_loss']:.3g} "
              f"(acc {last['test_acc']:.3f})")


def resolve_run(name: str) -> tuple[Any, Path | None]:
    """What ``mi-margin report NAME`` reports on, and where by default: a run folder (report
    inside it), else a model-zoo entry by name (report ``NAME.html`` here)."""
    from mi_margin import zoo

    path = Path(name)
    if path.is_dir():
        return path, None
    if path.is_file():
        raise MiMarginError(f"report needs a run folder (from mi-margin train --out) or a zoo entry, "
                            f"got the file {name}")
    entries = zoo.list()
    if not entries:
        raise MiMarginError(f"no run folder {name!r}, and no model zoo is installed "
                            f"({zoo.DATA} holds no entries)")
    if name not in entries:
        raise MiMarginError(f"{name!r} is neither a run folder nor a zoo entry; zoo entries: "
                            f"{', '.join(map(str, entries))}")
    return zoo.load(name), Path(f"{name}.html")


def cmd_report(args: argparse.Namespace) -> int:
    from mi_margin.viz.report import write_report

    run, default = resolve_run(args.run)
    out = write_report(run, args.out or default)
    print(f"report written to {out.resolve()}")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from mi_margin import zoo

    entries = zoo.titles()
    if not entries:
        raise MiMarginError(f"no model zoo is installed ({zoo.DATA} holds no entries)")
    width = max(map(len, entries))
    for name, title in entries.items():
        print(f"{name:{width}s}  {title}")
    print("\nload one with mm.zoo.load(NAME); its card: mm.zoo.card(NAME); its report: "
          "mi-margin report NAME")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mi_margin.demo import run_demo

    out = run_demo(Path(args.out), quick=args.quick)
    print(f"results written to {out.resolve()}")
    return 0


def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``train`` command's parser, added to the subparsers ``sub``."""
    p = sub.add_parser("train", help="train a model and write a run folder",
                       formatter_class=_Formatter)
    _task_args(p)
    _model_args(p)
    _train_args(p)
    p.add_argument("--out", required=True, help="run folder to write")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out up to --steps, or to its own step count, "
                            "with its own task, model and training settings (other flags are "
                            "refused unless they equal the run's own)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out (by default an existing run is refused)")
    p.set_defaults(func=cmd_train)
    return p


def given_flags(argv: list[str]) -> set[str]:
    """The dests of the ``train`` flags given in ``argv`` (``["train", ...]``), defaults left
    out: argparse fills in a default only where the namespace has no value yet, so ``argv`` is
    parsed again into a namespace holding a marker for every dest."""
    train_parser = add_train_parser(argparse.ArgumentParser().add_subparsers())
    unset = object()
    dests = vars(train_parser.parse_args(["--out", "-"]))
    parsed = train_parser.parse_args(argv[1:], argparse.Namespace(**dict.fromkeys(dests, unset)))
    return {dest for dest, value in vars(parsed).items() if value is not unset}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mi-margin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    p = sub.add_parser("info", help="describe a run folder")
    p.add_argument("run")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("report", help="write a self-contained HTML report of a run folder or "
                                      "a zoo entry")
    p.add_argument("run", help="run folder, or the name of a zoo entry")
    p.add_argument("--out", default=None,
                   help="HTML file, in an existing folder (default: RUN/report.html, or "
                        "NAME.html for a zoo entry)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("zoo", help="list the model zoo's entries with their titles")
    p.set_defaults(func=cmd_zoo)
    p = sub.add_parser("demo", help="train a small model, analyze it, write the results",
                       formatter_class=_Formatter)
    p.add_argument("--out", default="mi_margin_demo", help="folder for the run and its results")
    p.add_argument("--quick", action="store_true", help="fewer steps (for tests)")
    p.set_defaults(func=cmd_demo)
    from mi_margin.sweep.cli import add_sweep_parser

    add_sweep_parser(sub)
    from mi_margin.studies.cli import add_study_parser

    add_study_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mi-margin`` and ``python -m mi_margin``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = make_parser().parse_args(argv)
    try:
        if args.func is cmd_train:
            return cmd_train(args, given_flags(argv))
        return int(args.func(args))
    except (MiMarginError, OSError) as err:  # anticipated failures: one line, no traceback
        message = str(err).replace("\n", " ")
        print(f"mi-margin: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
