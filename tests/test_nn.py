"""agrad.nn: micrograd's API and random draws, activations, fused against
chained neurons, the losses, and micrograd's demo reproduced (bit for bit on
the two engines, and to rounding against micrograd itself)."""

import gc
import math
import random

import numpy as np
import pytest
from engines import exact

import agrad
import agrad.pure
from agrad import _core, nn, studies
from agrad.datasets import moons_data

micrograd_nn = pytest.importorskip("micrograd.nn", reason="micrograd is in the test extra")
micrograd_engine = pytest.importorskip("micrograd.engine")

ENGINES = [agrad.Value, agrad.pure.Value]


@pytest.mark.parametrize("value_class", ENGINES, ids=["native", "pure"])
def test_a_generator_of_its_own_gives_the_seeded_weights_and_leaves_random_alone(value_class):
    random.seed(7)
    seeded = [p.data for p in nn.MLP(3, [4, 5, 1], value_class=value_class).parameters()]
    random.seed(99)
    before = random.getstate()
    own = nn.MLP(3, [4, 5, 1], value_class=value_class, rng=random.Random(7))
    assert [exact(p.data) for p in own.parameters()] == [exact(x) for x in seeded]
    assert random.getstate() == before
    with pytest.raises(TypeError, match="rng must be"):
        nn.Neuron(2, rng=np.random.RandomState(0))


@pytest.mark.parametrize("value_class", ENGINES, ids=["native", "pure"])
def test_same_starting_weights_as_micrograd(value_class):
    random.seed(7)
    ours = nn.MLP(3, [4, 5, 1], value_class=value_class)
    after_ours = random.random()
    random.seed(7)
    theirs = micrograd_nn.MLP(3, [4, 5, 1])
    assert random.random() == after_ours  # the same number of draws
    assert [exact(p.data) for p in ours.parameters()] == [
        exact(p.data) for p in theirs.parameters()
    ]


def test_reprs_and_call_semantics_are_micrograds():
    random.seed(0)
    ours = nn.MLP(2, [3, 1])
    random.seed(0)
    theirs = micrograd_nn.MLP(2, [3, 1])
    assert repr(ours) == repr(theirs)
    assert repr(ours.layers[0]) == repr(theirs.layers[0])
    assert repr(nn.Neuron(2, nonlin=False)) == "LinearNeuron(2)"
    layer = nn.Layer(2, 3)
    assert isinstance(layer([1.0, 2.0]), list) and len(layer([1.0, 2.0])) == 3
    assert isinstance(nn.Layer(2, 1)([1.0, 2.0]), agrad.Value)
    assert isinstance(ours([0.5, -1.5]), agrad.Value)
    assert len(ours.parameters()) == 3 * 3 + 4
    # the same output as micrograd's model on the same weights
    x = [0.5, -1.5]
    assert ours(x).data == pytest.approx(theirs(list(map(micrograd_engine.Value, x))).data)


@pytest.mark.parametrize(
    ("activation", "function"),
    [
        ("relu", lambda a: max(a, 0.0)),
        ("tanh", math.tanh),
        ("sigmoid", lambda a: 1 / (1 + math.exp(-a))),
        ("linear", lambda a: a),
    ],
)
@pytest.mark.parametrize("value_class", ENGINES, ids=["native", "pure"])
def test_activations(activation, function, value_class):
    neuron = nn.Neuron(3, activation=activation, value_class=value_class)
    neuron.b.data = -0.25
    x = [0.3, -2.0, 1.5]
    a = -0.25 + sum(w.data * xi for w, xi in zip(neuron.w, x, strict=True))
    assert neuron(x).data == pytest.approx(function(a), abs=1e-15)
    assert repr(neuron) == f"{nn.ACTIVATIONS[activation]}Neuron(3)"
    assert neuron.nonlin == (activation != "linear")


def test_activations_per_layer():
    model = nn.MLP(2, [4, 3, 2], activation=["tanh", "sigmoid", "linear"])
    assert [layer.neurons[0].activation for layer in model.layers] == ["tanh", "sigmoid", "linear"]
    hidden = nn.MLP(2, [4, 1], activation="tanh")
    assert repr(hidden).startswith("MLP of [Layer of [TanhNeuron(2)")
    assert repr(hidden).endswith("Layer of [LinearNeuron(4)]]")
    out = model([1.0, -1.0])
    assert isinstance(out, list) and len(out) == 2


def _gradients_after(model, x):
    out = model(x)
    out = sum(out) if isinstance(out, list) else out
    out.backward()
    return [exact(out.data)] + [exact(p.grad) for p in model.parameters()]


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_fused_and_chained_neurons_give_the_same_bits(activation):
    random.seed(3)
    fused = nn.MLP(3, [8, 8, 2], activation=activation)
    random.seed(3)
    chained = nn.MLP(3, [8, 8, 2], activation=activation, fused=False)
    random.seed(3)
    pure = nn.MLP(3, [8, 8, 2], activation=activation, value_class=agrad.pure.Value)
    assert fused.layers[0].neurons[0].fused and not chained.layers[0].neurons[0].fused
    x = [0.7, -1.1, 2.3]
    expected = _gradients_after(pure, x)
    assert _gradients_after(fused, x) == expected
    assert _gradients_after(chained, x) == expected


def test_zero_grad():
    model = nn.MLP(2, [3, 1])
    model([1.0, 2.0]).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())
    assert nn.Module().parameters() == []


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: nn.Neuron(0), ValueError, "nin must be at least 1"),
        (lambda: nn.Neuron(2.0), TypeError, "nin must be an int"),
        (lambda: nn.Neuron(True), TypeError, "nin must be an int"),
        (lambda: nn.Neuron(2, nonlin="yes"), TypeError, "nonlin must be True or False"),
        (lambda: nn.Neuron(2, activation="gelu"), ValueError, "activation must be one of"),
        (lambda: nn.Neuron(2, activation=1), TypeError, "activation must be one of"),
        (lambda: nn.Neuron(2, nonlin=False, activation="tanh"), ValueError, "cannot have"),
        (lambda: nn.Neuron(2, value_class=float), TypeError, "value_class must be a Value class"),
        (lambda: nn.Neuron(2, fused="no"), TypeError, "fused must be"),
        (
            lambda: nn.Neuron(2, fused=True, value_class=agrad.pure.Value),
            ValueError,
            "fused=True needs the compiled engine",
        ),
        (lambda: nn.Layer(2, 0), ValueError, "nout must be at least 1"),
        (lambda: nn.Layer(2, 1, colour="red"), TypeError, "colour"),
        (lambda: nn.MLP(2, []), ValueError, "at least one layer"),
        (lambda: nn.MLP(2, 3), TypeError, "nouts must be a list"),
        (lambda: nn.MLP(2, [3, 0]), ValueError, "every layer size"),
        (lambda: nn.MLP(2, [3, 1], activation=["relu"]), ValueError, "names 1 layers"),
        (lambda: nn.MLP(2, [3, 1], activation=3), TypeError, "activation must be"),
    ],
)
def test_bad_construction(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_inputs():
    model = nn.MLP(2, [3, 1])
    with pytest.raises(ValueError, match=r"takes 2 inputs, not 3"):
        model([1.0, 2.0, 3.0])
    with pytest.raises(TypeError):
        model([1.0, "2"])
    with pytest.raises(TypeError):
        model(5)


@pytest.mark.parametrize("value_class", ENGINES, ids=["native", "pure"])
def test_losses(value_class):
    scores = [value_class(0.5), value_class(-2.0), value_class(1.5)]
    assert nn.mse(scores, [1.0, -1.0, 1.0]).data == pytest.approx((0.25 + 1 + 0.25) / 3)
    w = [value_class(0.5), value_class(-1.0)]
    hinge = nn.hinge_loss(scores, [1, -1, -1], w, alpha=0.1)
    assert hinge.data == pytest.approx((0.5 + 0 + 2.5) / 3 + 0.1 * 1.25)
    assert nn.hinge_loss(scores, [1, -1, -1]).data == pytest.approx(1.0)
    bce = nn.binary_cross_entropy(scores, [1, 0, 0])
    sig = [1 / (1 + math.exp(-s.data)) for s in scores]
    expected = -(math.log(sig[0]) + math.log(1 - sig[1]) + math.log(1 - sig[2])) / 3
    assert bce.data == pytest.approx(expected)
    bce.backward()  # d/dz of the mean: (sigmoid(z) - y) / n
    assert [s.grad for s in scores] == pytest.approx([(sig[0] - 1) / 3, sig[1] / 3, sig[2] / 3])
    # a confident right answer: no log(0), where log(1 - sigmoid(z)) would take one
    assert nn.binary_cross_entropy([value_class(-50.0)], [0]).data == pytest.approx(0, abs=1e-20)
    assert nn.accuracy(scores, [1, -1, -1]) == pytest.approx(2 / 3)
    assert nn.accuracy([0.9, 0.2], [1, 1], threshold=0.5) == 0.5


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: nn.mse(s, [1.0]), ValueError, "differ in length"),
        (lambda s: nn.mse([], []), ValueError, "at least one prediction"),
        (lambda s: nn.hinge_loss(s, [1, 0]), ValueError, "labels -1 and 1"),
        (lambda s: nn.hinge_loss(s, [1, -1], alpha="a"), TypeError, "alpha must be a number"),
        (lambda s: nn.binary_cross_entropy(s, [1, -1]), ValueError, "labels 0 and 1"),
        (lambda s: nn.binary_cross_entropy(s, [True, 0]), ValueError, "labels 0 and 1"),
    ],
)
def test_bad_loss_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call([agrad.Value(0.5), agrad.Value(-0.5)])


def test_the_demo_is_bit_for_bit_the_same_on_both_engines():
    # a short run: the pure engine takes about 2 s a step on the full demo
    native = studies.moons(samples=24, steps=6, engine="native", seed=5)
    pure = studies.moons(samples=24, steps=6, engine="pure", seed=5)
    assert [exact(x) for x in native.losses] == [exact(x) for x in pure.losses]
    assert [exact(p.data) for p in native.model.parameters()] == [
        exact(p.data) for p in pure.model.parameters()
    ]
    assert native.accuracies == pure.accuracies


# micrograd adds each node's gradient contributions in the order of its set of
# children, which follows the objects' hashes; ours follow the order of the
# operands.  So sums of the same terms can differ in the last bit, and a step
# carries that on.  Observed: at most 6e-16 relative over 10 steps; allowed:
MICROGRAD_RELATIVE_BOUND = 1e-12


def _micrograd_demo(samples, steps, seed):
    """micrograd's demo loop, on micrograd itself."""
    random.seed(seed)
    X, y = moons_data(samples, 0.1, np.random.RandomState(seed))
    y = [2 * int(label) - 1 for label in y]
    model = micrograd_nn.MLP(2, [16, 16, 1])
    losses = []
    for k in range(steps):
        scores = [model(list(map(micrograd_engine.Value, row))) for row in X.tolist()]
        data_loss = sum((1 + -yi * s).relu() for yi, s in zip(y, scores, strict=True)) * (
            1.0 / len(scores)
        )
        total = data_loss + 1e-4 * sum(p * p for p in model.parameters())
        losses.append(total.data)
        model.zero_grad()
        total.backward()
        for p in model.parameters():
            p.data -= (1.0 - 0.9 * k / steps) * p.grad
    return losses


def test_the_demo_matches_micrograd_to_rounding():
    ours = studies.moons(samples=30, steps=10, seed=1337).losses
    theirs = _micrograd_demo(30, 10, 1337)
    assert len(ours) == len(theirs) == 10
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a - b) <= MICROGRAD_RELATIVE_BOUND * abs(b)
    assert ours[-1] < ours[0] / 2  # and it learns


def test_moons_data_is_make_moons():
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is not a dependency")
    for n, noise, seed in [(100, 0.1, 1337), (7, 0.3, 5), (1, 0.0, 0)]:
        X, y = moons_data(n, noise, np.random.RandomState(seed))
        X_sk, y_sk = datasets.make_moons(n_samples=n, noise=noise, random_state=seed)
        assert np.array_equal(X, X_sk) and np.array_equal(y, y_sk)


def test_moons_data_shape_and_errors():
    X, y = moons_data(9, 0.0, np.random.RandomState(0))
    assert X.shape == (9, 2) and sorted(y.tolist()) == [0] * 4 + [1] * 5
    # without noise every point lies on its unit half circle
    upper = X[y == 0]
    assert np.allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0)
    with pytest.raises(ValueError, match="noise"):
        moons_data(5, -1.0)
    with pytest.raises(TypeError, match="rng"):
        moons_data(5, 0.1, rng=3)
    with pytest.raises(ValueError, match="at least 1"):
        moons_data(0)


def test_moons_study_leaves_random_states_alone():
    random.seed(11)
    np.random.seed(11)  # noqa: NPY002 - the global state is what is checked
    studies.moons(samples=10, steps=2)
    assert random.random() == random.Random(11).random()
    assert np.random.random() == np.random.RandomState(11).random()  # noqa: NPY002
    with pytest.raises(ValueError, match="steps"):
        studies.moons(steps=-1)


def test_draw_dot_in_a_notebook_with_and_without_dot(monkeypatch):
    from agrad import viz

    graph = agrad.draw_dot(nn.Neuron(2)([1.0, 2.0]))
    shown = graph._repr_mimebundle_()
    assert "<svg" in shown["image/svg+xml"]
    monkeypatch.setenv("PATH", "")  # no dot program to be found
    assert graph._repr_mimebundle_() == {"text/plain": viz.NO_DOT_MESSAGE}
    assert "\n" not in viz.NO_DOT_MESSAGE


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_training_under_agrad_compile_is_eager_bit_for_bit(activation):
    """micrograd's demo step with the loss built by a compiled function: the
    replayed forward pass, its kept backward pass and the optimizer's bulk
    step give eager agrad.nn's losses and weights, bit for bit."""
    X, labels = moons_data(40, 0.1, np.random.RandomState(3))
    X, y = X.tolist(), [2 * int(label) - 1 for label in labels]
    runs = []
    for compiled in (False, True):
        random.seed(11)
        model = nn.MLP(2, [8, 8, 1], activation=activation)
        params = model.parameters()
        opt = agrad.optim.SGD(params, lr=0.1, momentum=0.5)

        def loss(points, model=model, params=params):
            return nn.hinge_loss([model(x) for x in points], y, params)

        loss_of = agrad.compile(loss) if compiled else loss
        losses = []
        for _ in range(5):
            total = loss_of(X)
            opt.zero_grad()
            total.backward()
            opt.step()
            losses.append(exact(total.data))
        runs.append((losses, [exact(p.data) for p in params]))
    assert runs[0] == runs[1]


def test_a_neurons_weights_are_made_at_once_as_leaves():
    """agrad.nn makes a neuron's weights on the compiled engine in one call,
    _core._leaves (at consecutive ids of the arena): each a leaf holding its
    number, ints kept, as Value(x) would make it; a bad number is a
    TypeError that leaves the arena as it was."""
    gc.collect()
    live = _core._live_nodes()
    made = _core._leaves([0.5, 2, -1.25])
    assert [v.data for v in made] == [0.5, 2, -1.25]
    assert type(made[1].data) is int
    assert all(type(v) is agrad.Value and v.grad == 0 and v._op == "" for v in made)
    assert all(not v._prev for v in made)
    assert _core._live_nodes() == live + 3
    del made
    gc.collect()
    assert _core._live_nodes() == live
    assert _core._leaves([]) == []
    with pytest.raises(TypeError):
        _core._leaves([1.0, "a"])
    with pytest.raises(TypeError):
        _core._leaves(5)
    gc.collect()
    assert _core._live_nodes() == live
    random.seed(7)
    neuron = nn.Neuron(3)
    random.seed(7)
    weights = [random.uniform(-1, 1) for _ in range(3)]
    assert [w.data for w in neuron.w] == weights
    assert all(type(w) is agrad.Value for w in neuron.w)
    pure = nn.Neuron(3, value_class=agrad.pure.Value)
    assert all(type(w) is agrad.pure.Value for w in pure.w)
