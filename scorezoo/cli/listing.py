"""``scorezoo list``: the zoo registry, one row per model card."""

from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_FAILED, EXIT_OK, common_parent, fmt


def add_parser(sub) -> None:
    p = sub.add_parser("list", parents=[common_parent()], help="the zoo: models, measured bits/dim, where they are")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    p.set_defaults(func=run)


def measured(value: float | None, stderr: float | None, unit: str = "") -> str:
    """``"1.805 ± 0.015"`` (with a unit when given), ``"—"`` when there is no value."""
    if value is None:
        return "—"
    return f"{fmt(value, 3)}" + (f" ± {fmt(stderr, 3)}" if stderr is not None else "") + unit


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
    rows = [["name", "hub id", "sde", "weighting", "dataset", "resolution", "params", "held-out (ODE)",
             "held-out (bound)", "eval split", "status"]]
    for e in entries:
        if e.bpd_ode is None and e.nll_ode is not None:  # continuous data: nats per point
            ode, bound = measured(e.nll_ode, e.nll_ode_stderr, " nats"), measured(e.nll_bound, e.nll_bound_stderr,
                                                                                 " nats")
        else:
            ode, bound = measured(e.bpd_ode, e.bpd_ode_stderr), measured(e.bpd_bound, e.bpd_bound_stderr)
            if e.bpd_ode is None and e.bpd_reported is not None:
                ode = f"{e.bpd_reported:.2f} (reported)"
        rows.append([e.name + (" *" if e.default else ""), e.repo_id, e.sde or "—", e.weighting or "—",
                     e.dataset or "—", e.resolution or "—", f"{e.parameters:,}" if e.parameters is not None else "—",
                     ode, bound, e.eval_split or "—", e.status])
    print(text_table(rows, right={6}))
    print("* default model. held-out: bits/dim (nats per point for continuous data) ± standard error. status: "
          "bundled = installed with scorezoo; cached = in the local Hugging Face cache; remote = downloaded from the "
          "Hub on first use; convert = the authors' checkpoint, turned into a pipeline by `scorezoo convert` "
          "(reported = the authors' figure, not measured here).")
    return EXIT_FAILED if problems else EXIT_OK
