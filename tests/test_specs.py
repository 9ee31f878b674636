"""Architecture tables: channel rounding and MAC/param accounting against papers and checkpoints."""

from __future__ import annotations

import math

import pytest

from mnetctl.errors import BadInput
from mnetctl.specs import FAMILIES, decode, make_divisible

# (arch, width, res, classes, MACs in millions, params in millions, tolerance, source)
REFERENCE = [
    ("v1", 0.25, 128, 1001, 13.6, 0.468, 0.01, "checkpoint"),
    ("v1", 0.5, 160, 1001, 76.5, 1.327, 0.01, "checkpoint"),
    ("v1", 0.75, 192, 1001, 239.3, 2.578, 0.01, "checkpoint"),
    ("v1", 1.0, 224, 1001, 568.7, 4.222, 0.01, "checkpoint"),
    ("v2", 1.0, 224, 1001, 300.8, 3.489, 0.01, "checkpoint"),
    ("v3-small", 1.0, 224, 1001, 56.5, 2.538, 0.01, "checkpoint"),
    ("v1", 1.0, 128, 1001, 186, 4.24, 0.03, "paper"),
    ("v2", 1.4, 224, 1001, 582, 6.06, 0.03, "TF-slim"),
    ("v2", 0.75, 224, 1001, 209, 2.61, 0.03, "TF-slim"),
    ("v2", 0.5, 224, 1001, 97, 1.95, 0.03, "TF-slim"),
    ("v3-large", 1.0, 224, 1000, 217, 5.48, 0.03, "paper/timm"),
    ("v3-large", 0.75, 224, 1000, 155, 3.99, 0.03, "paper/timm"),
]


@pytest.mark.parametrize("arch,width,res,classes,macs_m,params_m,tol,source", REFERENCE)
def test_config_counts_match_reference(arch, width, res, classes, macs_m, params_m, tol, source):
    macs, params = decode(arch, width, res, classes).count_macs_params()
    assert macs / 1e6 == pytest.approx(macs_m, rel=tol), source
    assert params / 1e6 == pytest.approx(params_m, rel=tol), source


def test_make_divisible_rules():
    assert make_divisible(32 * 0.75) == 24
    assert make_divisible(18) == 24  # 16 would lose more than 10 %
    assert make_divisible(12) == 16
    assert make_divisible(3) == 8  # never below the divisor
    assert make_divisible(100) == 104
    for v in (5.5, 17.0, 41.0, 77.7, 1234.5):
        r = make_divisible(v)
        assert r % 8 == 0 and r >= 0.9 * v


def test_v2_keeps_1280_below_width_one_and_scales_above():
    assert decode("v2", 0.5).last_ch == 1280
    assert decode("v2", 1.0).last_ch == 1280
    assert decode("v2", 1.4).last_ch == make_divisible(1280 * 1.4)


def test_v3_rules_match_checkpoint_structure():
    small = decode("v3-small", 1.0, 224, 1001)
    # squeeze channels as in the released checkpoint: make_divisible(expanded / 4)
    assert [b.se_ch for b in small.blocks] == [8, 0, 0, 24, 64, 64, 32, 40, 72, 144, 144]
    assert [b.exp_ch for b in small.blocks] == [16, 72, 88, 96, 240, 240, 120, 144, 288, 576, 576]
    assert small.last_ch == 576 and small.head_ch == 1024
    assert not small.blocks[0].has_expand  # expansion 16 == input 16: no 1x1 expand conv
    large = decode("v3-large", 0.75)
    assert large.head_ch == 1280  # kept for width <= 1
    assert large.blocks[1].exp_ch == make_divisible(large.blocks[0].out_ch * 4)  # ratio 64/16 on the scaled input


def test_v1_layer_table():
    cfg = decode("v1", 1.0)
    assert [b.out_ch for b in cfg.blocks] == [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    assert sum(b.stride == 2 for b in cfg.blocks) == 4  # plus the stem: /32
    assert all(b.project_act and not b.residual for b in cfg.blocks)


def test_v2_layer_counts():
    cfg = decode("v2", 1.0)
    assert len(cfg.blocks) == 17
    assert sum(b.residual for b in cfg.blocks) == 10
    layers = cfg.param_layers()
    assert len(layers) == 1 + 16 * 3 + 2 + 1 + 1  # stem, 16 blocks x3 + first block x2, last conv, fc


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_bad_width_rejected(bad):
    with pytest.raises(BadInput, match="^width"):
        decode("v2", bad)


def test_bad_resolution_and_arch_rejected():
    with pytest.raises(BadInput, match="^resolution"):
        decode("v2", 1.0, 31)
    with pytest.raises(BadInput, match="unknown architecture"):
        decode("v4", 1.0)


def test_every_family_decodes_at_its_listed_widths():
    for fam in FAMILIES.values():
        for w in fam.widths:
            cfg = decode(fam.name, w)
            assert all(b.out_ch % 8 == 0 for b in cfg.blocks)
            assert math.isclose(cfg.width, w)
