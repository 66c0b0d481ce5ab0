"""The compiled drop test's tail probability against the Python reference, float for float.

``poisson_cdf`` is the regularized upper gamma Q(k + 1, lam), through ``math.lgamma`` (CPython's own
Lanczos approximation), ``math.exp`` and ``math.log``: the compiled one must give the same floats.
"""

from __future__ import annotations

import math
import struct

import churnwatch_native
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.rhythm import poisson_cdf, python_gamma_q


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


# What the drop tests ask: user-days observed and expected over a week or two, scaled by a dispersion.
counts = st.floats(0, 2_000) | st.integers(0, 60).map(float) | st.sampled_from([0.5, 4.0, 4.5])
rates = st.floats(1e-6, 2_000) | st.integers(1, 60).map(float) | st.sampled_from([1e-300, 5e-324])


@settings(max_examples=5000)
@given(counts, rates)
def test_the_compiled_tail_is_the_python_one_to_the_last_bit(k: float, lam: float) -> None:
    assert churnwatch_native.gamma_q(k + 1.0, lam) is not None
    assert _bits(poisson_cdf(k, lam)) == _bits(python_gamma_q(k + 1.0, lam))


@settings(max_examples=2000)
@given(st.floats(1.0, 1e6), st.floats(1e-12, 1e6))
def test_any_argument_from_one_gives_the_python_float(a: float, x: float) -> None:
    q = churnwatch_native.gamma_q(a, x)
    assert q is not None and _bits(q) == _bits(python_gamma_q(a, x))


def test_known_tails() -> None:
    # P(X <= 0) for X ~ Poisson(2) is e^-2; P(X <= 1) is 3 e^-2 (lgamma's integer cases, 1 and 2).
    assert math.isclose(poisson_cdf(0.0, 2.0), math.exp(-2), rel_tol=1e-12)
    assert math.isclose(poisson_cdf(1.0, 2.0), 3 * math.exp(-2), rel_tol=1e-12)
    assert poisson_cdf(3.0, 0.0) == 1.0 and poisson_cdf(-0.5, 2.0) == 0.0


def test_what_it_is_not_asked_it_declines() -> None:
    for a, x in ((0.5, 1.0), (1.0, 0.0), (math.nan, 1.0), (2.0, math.inf), (math.inf, 3.0)):
        assert churnwatch_native.gamma_q(a, x) is None


@settings(max_examples=2000)
@given(st.floats(3.0, 6.0), st.floats(1e-3, 50.0))
def test_arguments_either_side_of_the_lanczos_cut_give_the_python_float(a: float, x: float) -> None:
    # lgamma sums its rational function in x below 5 and in 1/x from 5 on.
    q = churnwatch_native.gamma_q(a, x)
    assert q is not None and _bits(q) == _bits(python_gamma_q(a, x))
