"""Pictures: the computational graph (``draw_dot``) and matplotlib figures of
training (loss curves), of a model's weights and decision boundary, and of
many runs (a heat map over two settings, the spread of each configuration).

``draw_dot`` returns a ``graphviz.Digraph``: it shows inline in Jupyter, and
``.render()`` writes a file, which needs Graphviz's ``dot`` program
(``apt-get install graphviz`` on Debian and Ubuntu, ``brew install graphviz``
on macOS).  The figures are written as PNG files with matplotlib's Agg
renderer, so they need no display.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "LOG_SCALE_RATIO",
    "MAX_DRAWN_NODES",
    "draw_dot",
    "graphviz_formats",
    "plot_decision_boundary",
    "plot_heatmap",
    "plot_intervals",
    "plot_loss_curves",
    "plot_spread",
    "plot_weights",
    "walk_graph",
    "write_atomically",
    "write_graph",
]

#: Graphs with more values than this are refused by ``draw_dot``: past a few
#: hundred nodes Graphviz takes long to lay them out and the picture is unreadable.
MAX_DRAWN_NODES = 1000

_RANKDIRS = ("LR", "RL", "TB", "BT")
# In every label dot reads \x as an escape (\n, \N, \l, ...) and &name; as a
# character entity; in a record's label {, }, |, < and > are its syntax, and
# runs of spaces collapse unless escaped.  A line break stays one (dot's \n);
# other control characters cannot be drawn, so they are shown as Python
# writes them ("\t", "\x00").
_CONTROL_ESCAPES = {code: repr(chr(code))[1:-1].replace("\\", "\\\\") for code in [*range(32), 127]}
_TEXT_ESCAPES = {**_CONTROL_ESCAPES, ord("\n"): "\\n", ord("\\"): "\\\\", ord("&"): "&amp;"}
_RECORD_ESCAPES = {**_TEXT_ESCAPES, **{ord(c): "\\" + c for c in "{}|<> "}}


def _require(module: str, purpose: str, package: str, extra: str | None = None):
    """Import ``module`` of a dependency, or say which package to install
    (through agrad's ``extra`` when it is an optional one)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        install = f'pip install "agrad[{extra}]" (or pip install {package})' if extra else ""
        raise ImportError(
            f"{purpose} needs the {package} package: {install or f'pip install {package}'}"
        ) from error


@functools.cache
def graphviz_formats() -> frozenset[str]:
    """The file formats the installed ``dot`` program writes (``dot -T?``).

    RuntimeError when there is no ``dot``.  Formats that open a window
    instead of writing a file are left out.

    >>> from agrad.viz import graphviz_formats
    >>> {"svg", "png", "pdf"} <= graphviz_formats()
    True
    """
    try:
        done = subprocess.run(["dot", "-T?"], capture_output=True, text=True, check=False)
    except OSError as error:
        raise RuntimeError(
            "Graphviz's dot program is not installed (apt-get install graphviz, "
            f"brew install graphviz): {error}"
        ) from None
    # dot answers an unknown format with the list of those it knows
    _, _, known = done.stderr.partition("Use one of:")
    return frozenset(known.split()) - {"x11", "xlib", "gtk"}


def write_graph(dot, path: str | os.PathLike) -> str:
    """Render ``dot`` (from ``draw_dot``) with Graphviz in its ``format`` and
    write it to ``path``, all or nothing: a failure leaves whatever was at
    ``path`` as it was.  Returns the path.

    >>> import os, tempfile
    >>> import agrad
    >>> from agrad.viz import write_graph
    >>> x = agrad.Value(2.0, label='x')
    >>> y = x * 3
    >>> path = write_graph(agrad.draw_dot(y), os.path.join(tempfile.mkdtemp(), "y.svg"))
    >>> os.path.basename(path), open(path).read().count("<svg")
    ('y.svg', 1)
    """
    graphviz = _require("graphviz", "write_graph", "graphviz")
    try:
        rendered = dot.pipe()
    except graphviz.CalledProcessError as error:
        message = error.stderr.decode(errors="replace").strip() if error.stderr else ""
        raise RuntimeError(f"Graphviz's dot failed: {message or error}") from None
    return write_atomically(path, lambda stream: stream.write(rendered))


def write_atomically(path: str | os.PathLike, write) -> str:
    """Call ``write`` on a binary file opened beside ``path``, and put it in
    place only once it is complete: a failure leaves whatever was at ``path``
    as it was (the figures, the graphs, a sweep's exported table).  Returns
    the path.

    >>> import os, tempfile
    >>> from agrad.viz import write_atomically
    >>> path = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> write_atomically(path, lambda stream: stream.write(b"all or nothing")) == path
    True
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    # opened as a new file ("x"), so it gets the permissions any new file would
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part")
    try:
        with open(temporary, "xb") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):  # open itself may have failed
            os.unlink(temporary)
        raise
    return path


def _children(value) -> tuple:
    # agrad's engines keep the ordered tuple; a micrograd-style Value has only the set
    children = getattr(value, "_children", None)
    return tuple(value._prev) if children is None else tuple(children)


def walk_graph(root, max_nodes: int | None = None) -> tuple[list, list]:
    """The values reachable from ``root`` and the edges ``(child, parent)``
    between them, found with an explicit stack (no recursion, so deep graphs
    are fine).  Each value is listed once, keyed by identity; an edge appears
    once per use, so ``x * x`` has two edges from ``x``.

    With ``max_nodes``, stop and raise ValueError as soon as the graph is found
    to have more values than that.

    >>> import agrad
    >>> from agrad.viz import walk_graph
    >>> x = agrad.Value(2.0, label='x')
    >>> y = x * x
    >>> y.label = 'y'
    >>> values, edges = walk_graph(y)
    >>> sorted(v.label for v in values), [(child.label, parent.label) for child, parent in edges]
    (['x', 'y'], [('x', 'y'), ('x', 'y')])
    """
    seen = {id(root)}
    nodes = [root]
    edges = []
    stack = [root]
    while stack:
        value = stack.pop()
        for child in _children(value):
            edges.append((child, value))
            if id(child) not in seen:
                seen.add(id(child))
                nodes.append(child)
                stack.append(child)
                if max_nodes is not None and len(nodes) > max_nodes:
                    raise ValueError(
                        f"the graph has more than {max_nodes} values, too many to draw legibly; "
                        f"draw a smaller expression (for example the loss of a few examples) "
                        f"or pass a larger max_nodes"
                    )
    return nodes, edges


def _format_number(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


#: What a notebook shows in place of a graph when Graphviz's dot is missing.
NO_DOT_MESSAGE = (
    "(the graph is not drawn: Graphviz's dot program is not installed; "
    "apt-get install graphviz, brew install graphviz or conda install graphviz)"
)


@functools.cache
def _inline_digraph_class():
    """A ``graphviz.Digraph`` that, shown in Jupyter without Graphviz's dot
    program, shows one line saying so instead of a traceback."""
    graphviz = _require("graphviz", "draw_dot", "graphviz")

    class Digraph(graphviz.Digraph):  # type: ignore[name-defined]
        def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
            try:
                return super()._repr_mimebundle_(include, exclude, **kwargs)
            except graphviz.ExecutableNotFound:
                return {"text/plain": NO_DOT_MESSAGE}

    Digraph.__qualname__ = Digraph.__name__ = "Digraph"
    return Digraph


def draw_dot(
    root,
    format: str = "svg",  # noqa: A002 - the book's and graphviz's name for it
    rankdir: str = "LR",
    show_grads: bool = False,
    max_nodes: int = MAX_DRAWN_NODES,
):
    """The computational graph below ``root`` as a ``graphviz.Digraph`` (shown
    inline in Jupyter; there, without Graphviz's dot program, a one-line
    message says so instead of a traceback), drawn
    as in the book: a record node per value (its label, its data and, with
    ``show_grads``, its gradient) and an oval node per operation, fed by the
    operation's inputs.  A fused ``sum`` or ``dot`` node is one operation with
    many inputs; constants appear as leaves.

    ``format`` is the file format ``render()`` writes, ``rankdir`` the layout
    direction (``LR``, ``RL``, ``TB`` or ``BT``).  A graph of more than
    ``max_nodes`` values raises ValueError instead of hanging Graphviz.

    >>> import agrad
    >>> x = agrad.Value(2.0, label='x')
    >>> y = x * 3
    >>> y.label = 'y'
    >>> dot = agrad.draw_dot(y, show_grads=True)
    >>> type(dot).__name__, dot.format
    ('Digraph', 'svg')
    >>> "{y|data 6.0000|grad 0.0000}" in dot.source
    True
    """
    graphviz = _require("graphviz", "draw_dot", "graphviz")
    if format not in graphviz.FORMATS:
        raise ValueError(
            f"unknown output format {format!r}; Graphviz knows {', '.join(sorted(graphviz.FORMATS))}"
        )
    if rankdir not in _RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(_RANKDIRS)}, not {rankdir!r}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"max_nodes must be a positive int, not {max_nodes!r}")
    if not hasattr(root, "data") or not (hasattr(root, "_children") or hasattr(root, "_prev")):
        raise TypeError(f"draw_dot draws a Value's graph, not a {type(root).__name__!r}")

    nodes, edges = walk_graph(root, max_nodes)
    dot = _inline_digraph_class()(format=format, graph_attr={"rankdir": rankdir})
    # node names are made of ids alone, so no user text needs quoting in them
    for value in nodes:
        name = f"v{id(value)}"
        fields = [
            str(value.label).translate(_RECORD_ESCAPES) or " ",
            f"data {_format_number(value.data)}",
        ]
        if show_grads:
            fields.append(f"grad {value.grad:.4f}")
        label = "{" + "|".join(fields) + "}"
        # nohtml: a label that looks like <...> is still text, not an HTML label
        dot.node(name, label=graphviz.nohtml(label), shape="record")
        if value._op:
            op_label = graphviz.nohtml(str(value._op).translate(_TEXT_ESCAPES))
            dot.node(f"op{id(value)}", label=op_label)
            dot.edge(f"op{id(value)}", name)
    for child, parent in edges:
        dot.edge(f"v{id(child)}", f"op{id(parent)}")
    return dot


def _save(figure, path: str | os.PathLike) -> str:
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    return write_atomically(
        path, lambda stream: figure.savefig(stream, format="png", dpi=120, bbox_inches="tight")
    )


def _figure(width: float, height: float):
    # a bare Figure draws with Agg and touches no global pyplot state or display
    Figure = _require("matplotlib.figure", "plotting", "matplotlib", "plot").Figure
    return Figure(figsize=(width, height), layout="constrained")


def plot_loss_curves(
    histories: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    title: str = "Training loss",
    log_scale: bool = True,
    references: Mapping[str, float] | None = None,
) -> str:
    """One line per training run: its loss at each epoch (the histories that
    ``train(..., history=[])`` records).  A mini-batch run's line is noisy,
    a full-batch run's smooth: that is the book's point.  ``references``
    draws labelled horizontal lines (say, the least-squares minimum).  Writes
    a PNG to ``path`` and returns the path.

    >>> import os, tempfile
    >>> from agrad.viz import plot_loss_curves
    >>> path = os.path.join(tempfile.mkdtemp(), "loss.png")
    >>> plot_loss_curves({"full batch": [4.0, 2.0, 1.0]}, path, references={"minimum": 0.5}) == path
    True
    """
    if not histories:
        raise ValueError("plot_loss_curves needs at least one history")
    for name, losses in histories.items():
        if len(losses) == 0:
            raise ValueError(f"the history {name!r} is empty")
    figure = _figure(8, 4.5)
    axes = figure.add_subplot()
    for order, (name, losses) in enumerate(histories.items()):
        # each later curve on top: a smooth full-batch line stays visible over a noisy one
        axes.plot(
            range(len(losses)),
            losses,
            label=name,
            linewidth=1.2 + 0.6 * order,
            alpha=0.9,
            zorder=3 + order,
        )
    for name, level in (references or {}).items():
        axes.axhline(
            level, color="0.2", linestyle=":", linewidth=1.2, label=name, zorder=2 + len(histories)
        )
    if log_scale:
        axes.set_yscale("log")
        # plain numbers (20, 30, 100) rather than 2x10^1: losses are read, not admired
        ticker = _require("matplotlib.ticker", "plotting", "matplotlib", "plot")
        axes.yaxis.set_major_formatter(ticker.LogFormatter())
        axes.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss (mean squared error)")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _label_weight_axes(axes, positions, names: list[str], title: str) -> None:
    # one feature a row, a line at 0 (a weight's sign), the legend out of the way
    axes.set_yticks(positions, names)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel("weight")
    axes.set_title(title)
    axes.grid(True, axis="x", alpha=0.3)
    axes.legend(loc="lower right")


def plot_weights(
    feature_names: Sequence[str],
    weights: Mapping[str, ArrayLike],
    path: str | os.PathLike,
    title: str = "Weights",
) -> str:
    """A horizontal bar chart of one or more weight vectors side by side
    (for example gradient descent and least squares), features sorted by the
    first vector's absolute weight, largest on top.  Writes a PNG to ``path``
    and returns the path.

    >>> import os, tempfile
    >>> from agrad.viz import plot_weights
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.png")
    >>> plot_weights(["age", "abdomen"], {"trained": [0.1, 5.0]}, path) == path
    True
    """
    import numpy as np

    names = list(feature_names)
    if not names or not weights:
        raise ValueError("plot_weights needs feature names and at least one weight vector")
    vectors = {label: np.asarray(w, dtype=float) for label, w in weights.items()}
    for label, w in vectors.items():
        if w.shape != (len(names),):
            raise ValueError(f"{label!r} has {w.size} weights for {len(names)} features")
    first = next(iter(vectors.values()))
    order = np.argsort(np.abs(first))  # barh draws the first row at the bottom
    figure = _figure(8, 0.45 * len(names) + 1.5)
    axes = figure.add_subplot()
    height = 0.8 / len(vectors)
    positions = np.arange(len(names))
    for i, (label, w) in enumerate(vectors.items()):
        offset = (len(vectors) - 1 - i) * height - 0.4 + height / 2
        axes.barh(positions + offset, w[order], height=height, label=label)
    _label_weight_axes(axes, positions, [names[i] for i in order], title)
    return _save(figure, path)


def plot_intervals(
    feature_names: Sequence[str],
    estimates: ArrayLike,
    intervals: Mapping[str, ArrayLike],
    path: str | os.PathLike,
    title: str = "Weights and their intervals",
) -> str:
    """A coefficient plot: each feature's weight as a dot with one or more
    intervals as error bars beside it (for example the Hessian's 95% interval
    and the bootstrap's), features sorted by the absolute weight over its
    first interval's half-width (the clearest on top), with a line at 0: an
    interval that crosses it leaves the weight's sign undecided.
    ``intervals`` maps a label to a ``(len(feature_names), 2)`` array of
    ``(low, high)`` rows.  Writes a PNG to ``path`` and returns the path.

    >>> import os, tempfile
    >>> from agrad.viz import plot_intervals
    >>> path = os.path.join(tempfile.mkdtemp(), "intervals.png")
    >>> plot_intervals(["age", "abdomen"], [0.1, 5.0],
    ...                {"95%": [[-0.5, 0.7], [4.0, 6.0]]}, path) == path
    True
    """
    import numpy as np

    names = list(feature_names)
    if not names or not intervals:
        raise ValueError("plot_intervals needs feature names and at least one set of intervals")
    centre = np.asarray(estimates, dtype=float)
    if centre.shape != (len(names),):
        raise ValueError(f"{centre.size} estimates for {len(names)} features")
    bounds = {label: np.asarray(rows, dtype=float) for label, rows in intervals.items()}
    for label, rows in bounds.items():
        if rows.shape != (len(names), 2):
            raise ValueError(
                f"{label!r} needs a (low, high) row for each of the {len(names)} features, "
                f"not an array of shape {rows.shape}"
            )
        if (rows[:, 0] > rows[:, 1]).any():
            raise ValueError(f"{label!r} has an interval whose low end is above its high end")
    first = next(iter(bounds.values()))
    half_width = (first[:, 1] - first[:, 0]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        clarity = np.where(half_width > 0, np.abs(centre) / half_width, np.inf)
    order = np.argsort(clarity)  # errorbar draws the first row at the bottom
    figure = _figure(8, 0.45 * len(names) + 1.5)
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    step = 0.6 / len(bounds)
    for i, (label, rows) in enumerate(bounds.items()):
        offset = (len(bounds) - 1 - i) * step - 0.3 + step / 2
        below = centre[order] - rows[order, 0]
        above = rows[order, 1] - centre[order]
        axes.errorbar(
            centre[order],
            positions + offset,
            xerr=np.clip([below, above], 0, None),
            fmt="o",
            capsize=3,
            label=label,
        )
    _label_weight_axes(axes, positions, [names[i] for i in order], title)
    return _save(figure, path)


def plot_decision_boundary(
    model,
    X: Sequence[Sequence[float]],
    y: Sequence[int],
    path: str | os.PathLike,
    title: str = "Decision boundary",
    resolution: int = 80,
) -> str:
    """The regions where ``model`` (a function of two numbers returning a
    score, such as an ``agrad.nn.MLP(2, [..., 1])``) scores above and below
    0 on a grid of ``resolution`` x ``resolution`` points around ``X``, with
    the points coloured by their labels ``y`` (-1 and 1, or 0 and 1).  Writes
    a PNG to ``path`` and returns the path.

    >>> import os, random, tempfile
    >>> from agrad import nn
    >>> from agrad.viz import plot_decision_boundary
    >>> random.seed(0)
    >>> path = os.path.join(tempfile.mkdtemp(), "boundary.png")
    >>> plot_decision_boundary(nn.MLP(2, [4, 1]), [[0.0, 0.0], [1.0, 1.0]], [-1, 1], path) == path
    True
    """
    import numpy as np

    points = np.asarray(X, dtype=float)
    labels = np.asarray(y)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(
            f"X must be a list of points with 2 coordinates, not of shape {points.shape}"
        )
    if labels.shape != (len(points),):
        raise ValueError(
            f"y must have one label per point: {labels.size} labels, {len(points)} points"
        )
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, int)
        or not 2 <= resolution <= 1000
    ):
        raise ValueError(f"resolution must be an int between 2 and 1000, not {resolution!r}")
    low, high = points.min(axis=0) - 1, points.max(axis=0) + 1
    xx, yy = np.meshgrid(
        np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution)
    )
    scores = []
    for a, b in zip(xx.ravel().tolist(), yy.ravel().tolist(), strict=True):
        score = model([a, b])
        scores.append(score.data if hasattr(score, "data") else score)
    above = (np.asarray(scores, dtype=float) > 0).reshape(xx.shape)
    figure = _figure(6, 5)
    axes = figure.add_subplot()
    axes.contourf(xx, yy, above, levels=[-0.5, 0.5, 1.5], colors=["#f2c6c6", "#c6d4f2"], alpha=0.8)
    positive = labels > 0
    for chosen, colour in ((~positive, "#c0392b"), (positive, "#2c5aa0")):
        if chosen.any():
            axes.scatter(
                *points[chosen].T,
                c=colour,
                edgecolors="black",
                s=30,
                label=f"label {labels[chosen][0]}",
            )
    axes.set_xlim(low[0], high[0])
    axes.set_ylim(low[1], high[1])
    axes.set_xlabel("first input, x[0]")
    axes.set_ylabel("second input, x[1]")
    axes.set_title(title)
    axes.legend(loc="upper right")
    return _save(figure, path)


#: A colour scale spanning more than this ratio of largest to smallest value
#: is logarithmic, so that one large cell does not wash out the differences
#: among the rest.
LOG_SCALE_RATIO = 10.0


def plot_heatmap(
    panels: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    row_label: str,
    column_label: str,
    value_label: str,
    title: str = "",
) -> str:
    """One heat map per panel, side by side: each a table (a pandas
    DataFrame: its index the rows' settings, its columns the columns') of
    numbers, every cell coloured and labelled with its value (nan: blank).

    The colour scale is logarithmic when the values are positive and span
    more than ``LOG_SCALE_RATIO``; each label is black or white, whichever
    stands out on its cell.  A panel of one cell shows no more than its
    number: give at least two cells in some panel (ValueError).  Writes a PNG
    to ``path`` and returns the path.

    >>> import os, tempfile
    >>> import pandas as pd
    >>> from agrad.viz import plot_heatmap
    >>> table = pd.DataFrame([[1.0, 2.0], [30.0, 400.0]], index=[0.01, 0.1], columns=[10, 20])
    >>> path = os.path.join(tempfile.mkdtemp(), "heat.png")
    >>> plot_heatmap({"500 epochs": table}, path, row_label="learning rate",
    ...              column_label="batch size", value_label="gap (%)") == path
    True
    """
    import numpy as np

    if not panels:
        raise ValueError("plot_heatmap needs at least one panel")
    grids = {name: np.asarray(table.to_numpy(), dtype=float) for name, table in panels.items()}
    if all(grid.size <= 1 for grid in grids.values()):
        raise ValueError("every panel has one cell: a heat map of one cell shows only its number")
    colors = _require("matplotlib.colors", "plotting", "matplotlib", "plot")
    figure = _figure(4.5 * len(panels) + 1, 4)
    for i, (name, table) in enumerate(panels.items(), start=1):
        grid = grids[name]
        axes = figure.add_subplot(1, len(panels), i)
        known = grid[~np.isnan(grid)]
        low, high = (known.min(), known.max()) if known.size else (0.0, 1.0)
        norm = (
            colors.LogNorm(low, high)
            if low > 0 and high / low > LOG_SCALE_RATIO
            else colors.Normalize(low, high)
        )
        image = axes.imshow(grid, cmap="viridis_r", norm=norm, aspect="auto")
        axes.set_xticks(range(len(table.columns)), [f"{c:g}" for c in table.columns])
        axes.set_yticks(range(len(table.index)), [f"{r:g}" for r in table.index])
        axes.set_xlabel(column_label)
        axes.set_ylabel(row_label)
        axes.set_title(name)
        for (y, x), value in np.ndenumerate(grid):
            if np.isnan(value):
                continue
            red, green, blue, _ = image.cmap(image.norm(value))
            # relative luminance (sRGB weights): dark text on light cells, light on dark
            light = 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5
            axes.text(
                x,
                y,
                f"{value:.3g}",
                ha="center",
                va="center",
                color="black" if light else "white",
                fontsize=9,
            )
        figure.colorbar(image, ax=axes, label=value_label)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_spread(
    groups: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    value_label: str,
    title: str = "",
) -> str:
    """A box plot per group, one row each in the order given: the spread of
    a measure over repeated runs (seeds) of each configuration.  The axis is
    logarithmic when every value is positive.  Writes a PNG to ``path`` and
    returns the path.

    >>> import os, tempfile
    >>> from agrad.viz import plot_spread
    >>> path = os.path.join(tempfile.mkdtemp(), "spread.png")
    >>> plot_spread({"lr 0.01": [1.0, 2.0, 3.0], "lr 0.1": [20.0, 30.0]}, path,
    ...             value_label="gap (%)") == path
    True
    """
    import numpy as np

    if not groups or any(len(values) == 0 for values in groups.values()):
        raise ValueError("plot_spread needs at least one group, and a value in each")
    samples = [np.asarray(values, dtype=float) for values in groups.values()]
    figure = _figure(8, 1 + 0.35 * len(groups))
    axes = figure.add_subplot()
    # matplotlib 3.10 renamed vert=False; the labels are set apart for the same reason
    sideways = (
        {"orientation": "horizontal"}
        if "orientation" in inspect.signature(axes.boxplot).parameters
        else {"vert": False}
    )
    axes.boxplot(samples, **sideways)
    axes.set_yticks(range(1, len(groups) + 1), list(groups))
    if all((values > 0).all() for values in samples):
        axes.set_xscale("log")  # gaps span decades between good and bad settings
    axes.set_xlabel(value_label)
    if title:
        axes.set_title(title)
    axes.grid(True, axis="x", alpha=0.3)
    return _save(figure, path)
