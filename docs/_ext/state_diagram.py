"""The ``state-diagram`` directive: the client's state machine, generated from its table.

Reads ``smtp_core._state.TRANSITIONS`` when the docs are built, so the picture cannot
drift from the code. It produces a Mermaid state diagram (rendered by the reader's
browser) and, for readers without JavaScript, the same table as text.

Transitions that many rows share (a 421 or the server closing the connection, which
end the session from anywhere; QUIT; a protocol error, which leads to ``ERROR`` from
every state) are written once as a note instead of an arrow from each state, and a
transition that stays in its state is written in the state's box.

The generator needs only ``smtp_core`` (the tests import it without Sphinx); the
directive is defined when Sphinx loads the extension.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import smtp_core._state as state_module
from smtp_core._state import TRANSITIONS, State, Trigger

Table = Mapping[State, Mapping[Trigger, State]]


def common_transitions(table: Table) -> dict[Trigger, tuple[State, list[State]]]:
    """Triggers that lead to one state from at least a third of the live states.

    Returns each such trigger with its target and the states it is allowed from.
    """
    live = [state for state, row in table.items() if row]
    targets: dict[Trigger, set[State]] = defaultdict(set)
    sources: dict[Trigger, list[State]] = defaultdict(list)
    for state in live:
        for trigger, target in table[state].items():
            targets[trigger].add(target)
            sources[trigger].append(state)
    return {
        trigger: (next(iter(targets[trigger])), sources[trigger])
        for trigger in targets
        if len(targets[trigger]) == 1 and 3 * len(sources[trigger]) >= len(live)
    }


def edges(table: Table) -> dict[tuple[State, State], list[Trigger]]:
    """Every (state, next state) pair of the table, with the triggers that make it.

    The common transitions are left out (see :func:`common_transitions`).
    """
    common = common_transitions(table)
    found: dict[tuple[State, State], list[Trigger]] = defaultdict(list)
    for state, row in table.items():
        for trigger, target in row.items():
            if trigger not in common:
                found[state, target].append(trigger)
    return dict(found)


def mermaid_source(table: Table = TRANSITIONS) -> str:
    """A Mermaid ``stateDiagram-v2`` of the table.

    A transition back to the same state is written inside the state's box rather than
    drawn as a loop; the common transitions are notes.
    """
    lines = ["stateDiagram-v2", f"    [*] --> {next(iter(table)).name}"]
    found = edges(table)
    for (state, target), triggers in found.items():
        label = ", ".join(trigger.name for trigger in triggers)
        if state is target:
            # A described state shows its descriptions only: the name goes first.
            lines.append(f"    {state.name}: {state.name}")
            lines.append(f"    {state.name}: stays on {label}")
        else:
            lines.append(f"    {state.name} --> {target.name}: {label}")
    drawn = {state for pair in found for state in pair}
    # A state no arrow reaches (ERROR: only a protocol error leads there) is declared,
    # or Mermaid cannot attach its note.
    lines += [f"    {state.name}" for state in State if state not in drawn]
    notes: dict[tuple[State, str], list[str]] = defaultdict(list)
    for trigger, (target, sources) in common_transitions(table).items():
        notes[target, _where(table, sources)].append(trigger.name)
    notes[State.ERROR, "every state"].append(Trigger.PROTOCOL_ERROR.name)
    for (target, where), names in notes.items():
        lines.append(f"    note right of {target.name}: {', '.join(names)} from {where}")
    return "\n".join(lines)


def _where(table: Table, sources: list[State], code: str = "") -> str:
    """ "every state but X" or "A, B, C", whichever is shorter."""
    others = [s for s in table if s not in sources]
    if not others:
        return "every state"
    if len(others) <= len(sources):
        return "every state but " + ", ".join(f"{code}{s.name}{code}" for s in others)
    return ", ".join(f"{code}{s.name}{code}" for s in sources)


def table_rows(table: Table = TRANSITIONS) -> list[tuple[str, str, str]]:
    """(state, trigger, next state) for every entry, in table order."""
    return [
        (state.name, trigger.name, target.name)
        for state, row in table.items()
        for trigger, target in row.items()
    ]


def markdown_lines(table: Table = TRANSITIONS) -> list[str]:
    """MyST Markdown for the diagram, the shared transitions and the full table."""
    out = ["```{mermaid}", *mermaid_source(table).splitlines(), "```", ""]
    common = common_transitions(table)
    if common:
        out += ["Drawn once rather than from every state:", ""]
        for trigger, (target, sources) in common.items():
            where = _where(table, sources, "`")
            out.append(f"* `{trigger.name}` leads to `{target.name}` from {where};")
        out.append("* `PROTOCOL_ERROR` leads to `ERROR` from every state, for good.")
        out.append("")
    out += ["| state | trigger | next state |", "|---|---|---|"]
    out += [
        f"| `{state}` | `{trigger}` | `{target}` |" for state, trigger, target in table_rows(table)
    ]
    return out


def setup(app: Any) -> dict[str, object]:
    """Sphinx entry point: register the ``state-diagram`` directive."""
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class StateDiagram(SphinxDirective):
        """``{state-diagram}`` in a MyST page: the diagram and table of ``smtp_core._state``."""

        has_content = False

        def run(self) -> list[nodes.Node]:
            self.env.note_dependency(state_module.__file__)
            self.env.note_dependency(__file__)
            container = nodes.container(classes=["state-diagram"])
            content = StringList(markdown_lines(), source="smtp_core._state.TRANSITIONS")
            self.state.nested_parse(content, self.content_offset, container)
            return [container]

    app.add_directive("state-diagram", StateDiagram)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
