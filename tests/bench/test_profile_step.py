"""bench/profile_step.py sorts each engine's op names into the kinds its
table reports, and its shares add up (issue 21, part 4)."""

import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "bench")
sys.path.insert(0, BENCH)

import profile_step  # noqa: E402


@pytest.mark.parametrize("name, kind", [
    ("_MklNativeConv2DBackpropFilter", "convolution"),  # TensorFlow
    ("conv_general_dilated", "convolution"),  # XLA
    ("aten::convolution_backward", "convolution"),  # torch
    ("aten::copy_", "layout copy"),
    ("transpose_copy_fusion", "layout copy"),
    ("aten::mm", "matmul"),
    ("_MklMatMul", "matmul"),
    ("aten::native_batch_norm", "elementwise"),
    ("ynn_fusion", "elementwise"),
    ("convert_element_type_fusion", "elementwise"),  # a dtype cast, not a convolution
    ("aten::mul", "elementwise"),
])
def test_op_kinds(name, kind):
    assert profile_step.op_kind(name) == kind


def test_summary_is_per_step_and_its_shares_add_up():
    ops = {"aten::convolution_backward": 3000.0, "aten::copy_": 1000.0, "aten::mul": 2000.0}
    per_step, shares, top = profile_step.summarise(ops, steps=2)
    assert per_step == {"convolution": 1.5, "layout copy": 0.5, "matmul": 0.0,
                        "elementwise": 1.0}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert top[0] == ("aten::convolution_backward", 1.5, 0.5)
