"""Where the host page's machine picture puts things: columns left to right, edges as curves.

Positions only; the SVG itself is a template (templates/graph.html), so every label is escaped
like the rest of the page. Status colours come from the installed connectors' vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inventory.machine_graph import MachineGraph

COLUMN_WIDTH = 210
COLUMN_GAP = 50
ROW_HEIGHT = 34
NODE_HEIGHT = 26
LABEL_CHARS = 26
COLUMN_ORDER = ("machine", "host", "workload", "service")
HEADINGS = {"machine": "Machine", "host": "Hosts", "workload": "Workloads", "service": "Services"}


@dataclass(frozen=True)
class PlacedNode:
    x: int
    y: int
    href: str | None
    label: str
    title: str
    state: str  # running | stopped | failed | inert | other, for the colour


def layout(graph: MachineGraph) -> dict[str, Any]:
    """Nodes with x/y, edge paths, headings and the picture's size."""
    from inventory.connector import installed_status_vocabulary

    vocabulary = installed_status_vocabulary()
    placed: dict[tuple[str, int], PlacedNode] = {}
    headings = []
    rows = max([len(graph.columns.get(c, [])) for c in COLUMN_ORDER] + [1])
    height = 30 + rows * ROW_HEIGHT + 20
    for index, column in enumerate(COLUMN_ORDER):
        nodes = graph.columns.get(column, [])
        x = index * (COLUMN_WIDTH + COLUMN_GAP)
        more = graph.more.get(column, 0)
        headings.append({"x": x, "text": HEADINGS[column] + (f" (+{more} more)" if more else "")})
        # Each column centred on the picture's height.
        top = 30 + (rows - len(nodes)) * ROW_HEIGHT // 2
        for row, node in enumerate(nodes):
            label = node.label if len(node.label) <= LABEL_CHARS else node.label[: LABEL_CHARS - 1] + "…"
            placed[(node.object_type, node.id)] = PlacedNode(
                x=x,
                y=top + row * ROW_HEIGHT,
                href=None if node.object_type == "machine" else f"/{node.object_type}s/{node.id}",
                label=label,
                title=" ".join(p for p in (node.label, node.detail, node.status or "") if p),
                state=vocabulary.classify(node.status) if node.status else "other",
            )
    edges = []
    for start, end in graph.edges:
        a, b = placed.get(start), placed.get(end)
        if a is None or b is None:
            continue
        x1, y1 = a.x + COLUMN_WIDTH, a.y + NODE_HEIGHT // 2
        x2, y2 = b.x, b.y + NODE_HEIGHT // 2
        middle = (x1 + x2) // 2
        edges.append(f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}")
    return {
        "nodes": list(placed.values()),
        "edges": edges,
        "headings": headings,
        "width": len(COLUMN_ORDER) * COLUMN_WIDTH + (len(COLUMN_ORDER) - 1) * COLUMN_GAP,
        "height": height,
        "node_width": COLUMN_WIDTH,
        "node_height": NODE_HEIGHT,
    }
