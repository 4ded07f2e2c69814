"""The learning-rate schedule, against hand-computed rates."""

import math

import pytest

from biounet.training.config import TrainConfig
from biounet.training.schedule import learning_rate


def rates(n, **kw):
    return [learning_rate(s, iterations=n, **kw) for s in range(1, n + 1)]


def test_constant_is_the_rate_throughout():
    assert rates(5, lr=0.01) == [0.01] * 5


def test_step_divides_by_ten_from_two_thirds_on():
    # steps 1..6 of 6: fractions done 0, 1/6, ..., 5/6; 4/6 >= 2/3 from step 5 on
    assert rates(6, lr=1.0, schedule="step") == pytest.approx([1, 1, 1, 1, 0.1, 0.1])


def test_poly_by_hand():
    got = rates(4, lr=2.0, schedule="poly")
    want = [2.0 * (1 - k / 4) ** 0.9 for k in range(4)]  # 2, 2*.75^.9, 2*.5^.9, 2*.25^.9
    assert got == pytest.approx(want, rel=1e-12)
    assert got[0] == 2.0 and got[-1] > 0 and math.isclose(got[2], 2 * 0.5**0.9)


def test_warmup_rises_linearly_then_follows_the_schedule():
    got = rates(8, lr=1.0, schedule="poly", warmup=4)
    assert got[:4] == pytest.approx([(s / 4) * (1 - (s - 1) / 8) ** 0.9 for s in range(1, 5)])
    assert got[4:] == pytest.approx([(1 - k / 8) ** 0.9 for k in range(4, 8)])


def test_unknown_schedule_and_negative_warmup_are_refused():
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, step, poly"):
        learning_rate(1, lr=1.0, iterations=2, schedule="cosine")
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="cosine")
    with pytest.raises(ValueError, match="warmup"):
        TrainConfig(warmup=-1)


def test_config_round_trip_keeps_the_schedule():
    cfg = TrainConfig(lr_schedule="poly", warmup=50)
    back = TrainConfig.from_dict(cfg.to_dict())
    assert (back.lr_schedule, back.warmup) == ("poly", 50)
    old = cfg.to_dict()
    del old["lr_schedule"], old["warmup"]  # a checkpoint written before schedules existed
    assert TrainConfig.from_dict(old).lr_schedule == "constant"
