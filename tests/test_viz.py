"""agrad.viz: draw_dot's graphs (rendered for real with Graphviz's dot) and
the matplotlib figures (written as PNG files)."""

import random
import re
import shutil
import warnings
from pathlib import Path

import pytest

import agrad
import agrad.pure
from agrad.datasets import batch_data, univariate_data
from agrad.linreg import LinReg, train
from agrad.viz import draw_dot, plot_loss_curves, plot_weights, walk_graph

graphviz = pytest.importorskip("graphviz")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def book_loss(value_class, n=5):
    random.seed(42)
    xs, ys = univariate_data(n)
    loss = LinReg(value_class=value_class).loss(xs, ys)
    loss.backward()
    return loss


def chain_loss(value_class):
    """The chapter's loss written as the chapter writes it, with the builtin
    sum (LinReg fuses the sum into one node on the compiled engine)."""
    random.seed(42)
    xs, ys = univariate_data()
    w, b = value_class(random.uniform(-1, 1), label="w"), value_class(0.0, label="b")
    loss = sum([(y - (w * x + b)) ** 2 for x, y in zip(xs, ys, strict=True)]) / len(xs)
    loss.backward()
    return loss


def record_labels(dot):
    return re.findall(r'label="\{(.*?)\}" shape=record', dot.source)


def op_labels(dot):
    return re.findall(r'\[label="?([^"{\]]+)"?\]', dot.source)


def test_the_books_loss_graph(Value):
    loss = book_loss(Value)
    nodes, edges = walk_graph(loss)
    dot = draw_dot(loss)
    assert isinstance(dot, graphviz.Digraph)
    records = record_labels(dot)
    assert len(records) == len(nodes)
    interior = [v for v in nodes if v._op]
    assert len(op_labels(dot)) == len(interior)
    # an op node per operation, fed by every use of each input, feeding its result
    assert dot.source.count("->") == len(edges) + len(interior)
    assert "w|data 0.0107" in records and "b|data 0.0000" in records
    assert records[0] == " |data 78.4957"  # the root: the loss
    # on the compiled engine LinReg's sum of squared errors is one fused node
    fused = ["sum"] if Value is agrad.Value else []
    assert sorted(set(op_labels(dot))) == ["*", "**2", "+", *fused]
    assert not any("grad" in r for r in records)
    assert "grad 1.0000" in draw_dot(loss, show_grads=True).source


def test_both_engines_draw_the_same_graph():
    sources = [
        re.sub(r"\d{6,}", "", draw_dot(chain_loss(v), show_grads=True).source)
        for v in (agrad.Value, agrad.pure.Value)
    ]
    assert sorted(sources[0].splitlines()) == sorted(sources[1].splitlines())


def test_render_svg_for_real(tmp_path):
    if shutil.which("dot") is None:
        pytest.fail(
            "Graphviz's dot program is missing: apt-get install graphviz (or brew install graphviz)"
        )
    dot = draw_dot(book_loss(agrad.Value), format="svg", rankdir="TB", show_grads=True)
    path = dot.render(tmp_path / "loss", cleanup=True)
    svg = (tmp_path / "loss.svg").read_text()
    assert path.endswith("loss.svg")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "data 78.4957" in svg and "grad 1.0000" in svg
    assert "rankdir=TB" in dot.source


def test_fused_sum_is_one_operation_with_many_inputs():
    xs = [agrad.Value(float(i), label=f"x{i}") for i in range(6)]
    total = agrad.sum([*xs, 2.5])
    dot = draw_dot(total)
    assert op_labels(dot) == ["sum"]
    assert dot.source.count("->") == 7 + 1  # six inputs and the constant, then the result
    assert " |data 2.5000" in record_labels(dot)  # the constant is a leaf of its own


def test_constants_are_leaves_and_repeated_inputs_two_edges():
    x = agrad.pure.Value(3, label="x")
    dot = draw_dot(x * x * 2)
    records = record_labels(dot)
    assert "x|data 3" in records and " |data 2" in records and " |data 18" in records
    assert (
        dot.source.count("->") == 2 + 2 + 2
    )  # x twice into the first *, then 9 and 2, two results


def test_micrograd_style_values_with_only_prev():
    class Micro:
        def __init__(self, data, children=(), op="", label=""):
            self.data, self._prev, self._op, self.label, self.grad = (
                data,
                set(children),
                op,
                label,
                0.0,
            )

    a, b = Micro(2.0, label="a"), Micro(3.0, label="b")
    dot = draw_dot(Micro(6.0, (a, b), "*", "c"))
    assert sorted(record_labels(dot)) == ["a|data 2.0000", "b|data 3.0000", "c|data 6.0000"]


def test_labels_with_record_syntax_are_escaped(tmp_path):
    v = agrad.Value(1.0, label="a|b{c}<d>") * 2
    dot = draw_dot(v)
    assert r"a\|b\{c\}\<d\>" in dot.source
    dot.render(tmp_path / "escaped", format="svg", cleanup=True)  # dot accepts it


def test_deep_graph_walks_without_recursion_and_is_refused_for_drawing():
    v = agrad.Value(0.0)
    for _ in range(50_000):
        v = v + 1.0
    nodes, edges = walk_graph(v)
    assert len(nodes) == 100_001 and len(edges) == 100_000
    with pytest.raises(ValueError, match="more than 1000 values"):
        draw_dot(v)
    with pytest.raises(ValueError, match="more than 10 values"):
        walk_graph(v, max_nodes=10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "docx"}, "unknown output format"),
        ({"rankdir": "UP"}, "rankdir must be one of"),
        ({"max_nodes": 0}, "max_nodes"),
    ],
)
def test_draw_dot_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        draw_dot(agrad.Value(1.0), **kwargs)


def test_draw_dot_needs_a_value():
    with pytest.raises(TypeError, match="not a 'float'"):
        draw_dot(1.0)


def assert_png(path, min_width, min_height):
    import matplotlib.image

    with open(path, "rb") as stream:
        assert stream.read(8) == PNG_SIGNATURE
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width >= min_width and height >= min_height


def test_loss_curves_png(tmp_path):
    pytest.importorskip("matplotlib")
    random.seed(42)
    xs, ys = batch_data(200)
    full, mini = [], []
    train(LinReg(), xs, ys, learning_rate=0.01, n_epochs=40, log_every=None, history=full)
    train(
        LinReg(),
        xs,
        ys,
        learning_rate=0.01,
        n_epochs=40,
        batch_size=10,
        log_every=None,
        history=mini,
    )
    path = plot_loss_curves(
        {"mini-batch of 10": mini, "full batch": full},
        tmp_path / "figs" / "loss.png",
        references={"least squares": 25.0},
    )
    assert_png(path, 600, 300)


def test_weights_png(tmp_path):
    pytest.importorskip("matplotlib")
    names = ["abdomen", "weight", "hip"]
    path = plot_weights(
        names,
        {"gradient descent": [9.1, -2.4, -1.6], "least squares": [9.5, -2.4, -1.5]},
        tmp_path / "weights.png",
    )
    assert_png(path, 600, 150)


def test_plot_bad_arguments(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="at least one history"):
        plot_loss_curves({}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="is empty"):
        plot_loss_curves({"run": []}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="2 weights for 3 features"):
        plot_weights(["a", "b", "c"], {"fit": [1.0, 2.0]}, tmp_path / "b.png")


# strings DOT or a record label would otherwise read as syntax: a final
# backslash, escapes such as \n and \N, HTML-like labels, quotes, record fields
HOSTILE_TEXTS = [
    "\\",
    "ends in \\",
    "\\\\",
    "<b>",
    "<<b>bold</b>>",
    'say "hi"',
    '\\"',
    "\\n and \\N and \\G and \\l",
    "a|b{c}<d>",
    "two  spaces",
    "&amp; <!-- x -->",
    '[label="x"]',
    "ünï ∑ ✓",
]


def svg_texts(dot):
    import xml.etree.ElementTree as ET

    svg = ET.fromstring(dot.pipe(format="svg"))
    # dot keeps a run of spaces visible in SVG by making all but the first no-break spaces
    return [t.text.replace("\xa0", " ") for t in svg.iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_every_label_and_op_is_drawn_verbatim(Value, text):
    a = Value(1.5, label=text)
    v = Value(3.0, (a,), text, text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # graphviz warns when it writes DOT that dot will reject
        texts = svg_texts(draw_dot(v))
    assert texts.count(text) == 3, texts  # both values' labels and the operation
    assert texts.count("data 1.5000") == 1


def test_line_breaks_stay_and_control_characters_show_escaped():
    leaf = agrad.pure.Value(1.0, label="two\nlines")
    texts = svg_texts(draw_dot(agrad.pure.Value(2.0, (leaf,), "tab\there\x00\x7f")))
    assert texts[texts.index("two") + 1] == "lines"
    assert "tab\\there\\x00\\x7f" in texts


def test_missing_matplotlib_names_the_package_to_install(tmp_path, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: ImportError
    with pytest.raises(ImportError) as info:
        plot_weights(["a"], {"fit": [1.0]}, tmp_path / "w.png")
    message = str(info.value)
    assert 'pip install "agrad[plot]"' in message and "pip install matplotlib" in message
    assert "matplotlib." not in message
    assert not (tmp_path / "w.png").exists()


def test_a_figure_that_fails_to_save_leaves_the_old_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    path = tmp_path / "loss.png"
    path.write_bytes(b"the user's own figure")

    def fail_half_way(self, stream, **kwargs):
        stream.write(PNG_SIGNATURE)
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        plot_loss_curves({"run": [3.0, 2.0]}, path)
    assert path.read_bytes() == b"the user's own figure"
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]


def _drawn(monkeypatch, draw):
    """The matplotlib figure that ``draw()`` saves, kept for a look inside."""
    from agrad import viz

    figures = []
    monkeypatch.setattr(viz, "_save", lambda figure, path: figures.append(figure) or str(path))
    draw()
    (figure,) = figures
    return figure


def test_heat_map_labels_stand_out_and_a_wide_spread_is_on_a_log_scale(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    from matplotlib.colors import LogNorm

    from agrad.viz import plot_heatmap

    wide = pd.DataFrame([[1.0, 2.0], [3.0, 900.0]], index=[0.01, 0.1], columns=[10, 20])
    narrow = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=[0.01, 0.1], columns=[10, 20])
    figure = _drawn(
        monkeypatch,
        lambda: plot_heatmap(
            {"wide": wide, "narrow": narrow},
            tmp_path / "heat.png",
            row_label="learning rate",
            column_label="batch size",
            value_label="gap (%)",
        ),
    )
    wide_axes, narrow_axes = figure.axes[0], figure.axes[2]  # each panel has its colour bar
    assert isinstance(wide_axes.images[0].norm, LogNorm)
    assert not isinstance(narrow_axes.images[0].norm, LogNorm)
    # viridis_r: the smallest value is the lightest cell, the largest the darkest
    colours = {text.get_text(): text.get_color() for text in narrow_axes.texts}
    assert colours["1"] == "black" and colours["4"] == "white"
    assert [wide_axes.get_xlabel(), wide_axes.get_ylabel()] == ["batch size", "learning rate"]


def test_a_heat_map_of_one_cell_is_refused(tmp_path):
    pd = pytest.importorskip("pandas")
    from agrad.viz import plot_heatmap

    one = pd.DataFrame([[1.0]], index=[0.01], columns=[5])
    with pytest.raises(ValueError, match="one cell"):
        plot_heatmap(
            {"500 epochs": one},
            tmp_path / "heat.png",
            row_label="r",
            column_label="c",
            value_label="v",
        )
    assert not (tmp_path / "heat.png").exists()


def test_a_sweep_of_one_setting_draws_no_heat_map(tmp_path):
    pytest.importorskip("matplotlib")
    from agrad import sweep

    runs = sweep.sweep("univariate", seeds=range(3), epochs=10, jobs=1)
    assert [Path(p).name for p in sweep.plot(runs, tmp_path)] == ["sweep-univariate-spread.png"]


def test_the_moons_figure_labels_its_axes(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from agrad import nn
    from agrad.viz import plot_decision_boundary

    model = nn.MLP(2, [4, 1], rng=random.Random(0))
    figure = _drawn(
        monkeypatch,
        lambda: plot_decision_boundary(
            model, [[0.0, 0.0], [1.0, 1.0]], [-1, 1], tmp_path / "b.png"
        ),
    )
    assert figure.axes[0].get_xlabel() and figure.axes[0].get_ylabel()
