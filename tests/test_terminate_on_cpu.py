"""Adaptive early termination on hand-made answer sets."""

from __future__ import annotations

import pytest

from spex_ray.tree.terminate import EarlyStop


def test_clear_leader_with_little_width_left_stops():
    rule = EarlyStop(alpha=1.0, min_confidence=0.5)
    decision = rule.decide([("12", 0.9), ("12.0", 0.8), ("12", 0.85), ("7", 0.3)], remaining=2)
    assert decision.stop and decision.leader == "12"
    assert decision.margin == pytest.approx(2.55 - 0.3)
    assert decision.needed == pytest.approx(2 * 0.3)


def test_much_width_left_keeps_going():
    rule = EarlyStop(alpha=1.0, min_confidence=0.5)
    assert not rule.decide([("12", 0.9), ("12", 0.8), ("7", 0.3)], remaining=10).stop


def test_alpha_scales_the_margin():
    answers = [("12", 0.9), ("12", 0.8), ("7", 0.3)]
    assert EarlyStop(alpha=0.5).decide(answers, remaining=4).stop
    assert not EarlyStop(alpha=2.0).decide(answers, remaining=4).stop


def test_low_confidence_leader_does_not_stop():
    answers = [("12", 0.2), ("12", 0.3), ("12", 0.25)]
    assert not EarlyStop(alpha=0.1, min_confidence=0.5).decide(answers, remaining=1).stop
    assert EarlyStop(alpha=0.1, min_confidence=0.2).decide(answers, remaining=1).stop


def test_single_class_uses_typical_rival_and_needs_enough_answers():
    rule = EarlyStop(alpha=1.0, min_confidence=0.5, min_answers=2)
    assert not rule.decide([("3", 0.9)], remaining=0).stop
    assert rule.decide([("3", 0.9), ("3", 0.7)], remaining=1).stop  # 1.6 > 1 * 0.8
    assert not rule.decide([("3", 0.9), ("3", 0.7)], remaining=2).stop  # 1.6 == 2 * 0.8


def test_unanswered_paths_do_not_count():
    rule = EarlyStop(alpha=1.0)
    assert not rule.decide([(None, 0.9), (None, 0.9), ("5", 0.9)], remaining=0).stop
