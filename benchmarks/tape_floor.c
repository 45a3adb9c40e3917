/* The floor for the "Fastest Autograd in the West" graph: a hand-written
 * tape interpreter in plain C, what a scalar autograd with no Python in its
 * loop could at best be.
 *
 * The graph (benchmarks/peers.py builds the same one with agrad): 100
 * inputs, then operation i by i mod 4 appends
 *   0: softplus(n[-10]) = log(1 + exp(n[-10]))
 *   1: n[-30] + n[-25] + n[-20] + n[-15]          (the sum of n[-30:-10:5])
 *   2: n[-20] * n[-10]
 *   3: the 4 outputs of softmax(n[-4:]), exp(x_k) / sum_j exp(x_j), written
 *      without the max shift;
 * the gradient is of the last node.
 *
 * The tape is flat arrays (an operation's kind, where its operands' indices
 * start, where its outputs start), and each direction is one loop over it
 * with one switch.  No fast-math: every operation is the IEEE one its formula
 * says, as in agrad.  peers.py builds this file with the system compiler at
 * -O3 into a shared library and calls it through ctypes, so that it is timed
 * in the same process and by the same clock as agrad, interleaved with it.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { SOFTPLUS, SUM4, MUL, SOFTMAX4 };

typedef struct {
    int32_t operations;
    int32_t nodes;     /* inputs and outputs of every operation */
    uint8_t* kind;     /* per operation */
    int32_t* operands; /* per operation: index into args of its first operand */
    int32_t* output;   /* per operation: its first output node */
    int32_t* args;     /* operand node indices, each operation's in a run */
    double* value;     /* per node */
    double* grad;      /* per node */
} Tape;

enum { INPUTS = 100 };

void tape_free(Tape* t) {
    if (!t) return;
    free(t->kind);
    free(t->operands);
    free(t->output);
    free(t->args);
    free(t->value);
    free(t->grad);
    free(t);
}

/* The tape of the graph with `operations` operations; input k holds
 * inputs[k].  NULL when out of memory. */
Tape* tape_new(int32_t operations, const double* inputs) {
    Tape* t = calloc(1, sizeof *t);
    if (!t) return NULL;
    /* a softmax makes 4 nodes and takes 4 operands, at most 4 of each an op */
    int64_t max_nodes = INPUTS + 4 * (int64_t)operations;
    t->kind = malloc((size_t)operations);
    t->operands = malloc(sizeof(int32_t) * (size_t)operations);
    t->output = malloc(sizeof(int32_t) * (size_t)operations);
    t->args = malloc(sizeof(int32_t) * 4 * (size_t)operations);
    t->value = malloc(sizeof(double) * (size_t)max_nodes);
    t->grad = malloc(sizeof(double) * (size_t)max_nodes);
    if (!t->kind || !t->operands || !t->output || !t->args || !t->value || !t->grad) {
        tape_free(t);
        return NULL;
    }
    memcpy(t->value, inputs, sizeof(double) * INPUTS);
    int32_t n = INPUTS, a = 0;
    for (int32_t i = 0; i < operations; i++) {
        t->operands[i] = a;
        t->output[i] = n;
        switch (i % 4) {
            case 0:
                t->kind[i] = SOFTPLUS;
                t->args[a++] = n - 10;
                n += 1;
                break;
            case 1:
                t->kind[i] = SUM4;
                for (int32_t k = 30; k > 10; k -= 5) t->args[a++] = n - k;
                n += 1;
                break;
            case 2:
                t->kind[i] = MUL;
                t->args[a++] = n - 20;
                t->args[a++] = n - 10;
                n += 1;
                break;
            default:
                t->kind[i] = SOFTMAX4;
                for (int32_t k = 4; k > 0; k--) t->args[a++] = n - k;
                n += 4;
                break;
        }
    }
    t->operations = operations;
    t->nodes = n;
    return t;
}

static void forward(Tape* t) {
    const uint8_t* kind = t->kind;
    const int32_t* args = t->args;
    double* v = t->value;
    for (int32_t i = 0; i < t->operations; i++) {
        const int32_t* a = args + t->operands[i];
        double* out = v + t->output[i];
        switch (kind[i]) {
            case SOFTPLUS:
                out[0] = log(1.0 + exp(v[a[0]]));
                break;
            case SUM4:
                out[0] = v[a[0]] + v[a[1]] + v[a[2]] + v[a[3]];
                break;
            case MUL:
                out[0] = v[a[0]] * v[a[1]];
                break;
            case SOFTMAX4: {
                double e0 = exp(v[a[0]]), e1 = exp(v[a[1]]), e2 = exp(v[a[2]]), e3 = exp(v[a[3]]);
                double s = e0 + e1 + e2 + e3;
                out[0] = e0 / s;
                out[1] = e1 / s;
                out[2] = e2 / s;
                out[3] = e3 / s;
                break;
            }
        }
    }
}

static void backward(Tape* t) {
    const uint8_t* kind = t->kind;
    const int32_t* args = t->args;
    const double* v = t->value;
    double* g = t->grad;
    memset(g, 0, sizeof(double) * (size_t)t->nodes);
    g[t->nodes - 1] = 1.0;
    for (int32_t i = t->operations - 1; i >= 0; i--) {
        const int32_t* a = args + t->operands[i];
        const int32_t o = t->output[i];
        switch (kind[i]) {
            case SOFTPLUS: /* d softplus(x) / dx = sigmoid(x) */
                g[a[0]] += g[o] / (1.0 + exp(-v[a[0]]));
                break;
            case SUM4:
                g[a[0]] += g[o];
                g[a[1]] += g[o];
                g[a[2]] += g[o];
                g[a[3]] += g[o];
                break;
            case MUL:
                g[a[0]] += g[o] * v[a[1]];
                g[a[1]] += g[o] * v[a[0]];
                break;
            case SOFTMAX4: { /* dx_k = y_k (g_k - sum_j g_j y_j) */
                const double *y = v + o, *gy = g + o;
                double dot = gy[0] * y[0] + gy[1] * y[1] + gy[2] * y[2] + gy[3] * y[3];
                g[a[0]] += y[0] * (gy[0] - dot);
                g[a[1]] += y[1] * (gy[1] - dot);
                g[a[2]] += y[2] * (gy[2] - dot);
                g[a[3]] += y[3] * (gy[3] - dot);
                break;
            }
        }
    }
}

/* `count` evaluations, forward then backward: what is timed. */
void tape_run(Tape* t, int32_t count) {
    for (int32_t c = 0; c < count; c++) {
        forward(t);
        backward(t);
    }
}

int32_t tape_nodes(const Tape* t) { return t->nodes; }
double tape_value(const Tape* t, int32_t node) { return t->value[node]; }
double tape_grad(const Tape* t, int32_t node) { return t->grad[node]; }
