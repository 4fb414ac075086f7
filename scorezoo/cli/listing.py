"""``scorezoo list``: the zoo registry, one row per model card."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from .common import EXIT_FAILED, EXIT_OK, common_parent

#: the widest line of the default table and its note (a terminal of 120 columns)
WIDTH = 120


def add_parser(sub) -> None:
    p = sub.add_parser("list", parents=[common_parent()], help="the zoo: models, measured bits/dim, where they are")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--wide", action="store_true",
                      help="every column (Hub id, data set, resolution, eval split, where a published checkpoint is "
                           "and the command that converts it), however wide")
    view.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table (every field)")
    p.set_defaults(func=run)


def rows(entries, wide: bool = False) -> list[list[str]]:
    """The table of :func:`run`, header first: name, status, SDE, weighting, parameters and the held-out figures
    (:meth:`scorezoo.zoo.ZooEntry.held_out`), within :data:`WIDTH` columns; ``wide`` adds the Hub id, data set,
    resolution, eval split and, for a published checkpoint, its ``scorezoo convert`` command and where it is
    published, and spells the status out."""
    from .. import zoo

    head = ["name", "status", "sde", "weighting", "params", "held-out (ODE)", "held-out (bound)"]
    out = [head + (["hub id", "dataset", "resolution", "eval split", "convert with", "published at"] if wide else [])]
    for e in entries:
        status = "convert" if e.status == zoo.CONVERT_STATUS and not wide else e.status
        row = [e.name + (" *" if e.default else ""), status, e.sde or "—", e.weighting or "—",
               f"{e.parameters:,}" if e.parameters is not None else "—", e.held_out("ode"), e.held_out("bound")]
        if wide:
            row += [e.repo_id, e.dataset or "—", e.resolution or "—", e.eval_split or "—", e.conversion or "—",
                    e.published_at or "—"]
        out.append(row)
    return out


#: the note under the table: the marks, units and statuses
NOTE = ("* default model. held-out: bits/dim (nats per point for continuous data) ± standard error, on the split "
        "of each card (--wide shows it). status: bundled = installed with scorezoo; cached = in the local Hugging "
        "Face cache; remote = downloaded from the Hub on first use; convert = the authors' published checkpoint, "
        "made into a pipeline folder by `scorezoo convert` (--wide, or from_pretrained with its name, gives the "
        "command and where the checkpoint is); reported = the authors' figure, not measured here (score_sde_pytorch "
        "publishes one per checkpoint; score_flow none per run).")


def run(args: argparse.Namespace) -> int:
    """One row per model card; exit 1 when a card could not be read."""
    from .. import zoo
    from ..display import text_table

    entries, problems = zoo.registry()
    for line in problems:
        print(f"scorezoo: warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return EXIT_FAILED if problems else EXIT_OK
    if not entries:
        print(f"no models found: nothing bundled in {zoo.BUNDLED_DIR} and no cards in {zoo.CARDS_DIR}.")
        return EXIT_FAILED if problems else EXIT_OK
    print(text_table(rows(entries, wide=args.wide), right={4}))
    print(textwrap.fill(NOTE, WIDTH))
    return EXIT_FAILED if problems else EXIT_OK
