"""The draft-length policy: γ from the acceptance rate and from what passes really cost here."""

from __future__ import annotations

import pytest

from evalsuite.errors import ConfigError
from evalsuite.generation.schedule import DraftLengthController, PassCosts, expected_tokens


def test_expected_tokens_follows_leviathan_eq_1() -> None:
    # (1 - α^(k+1)) / (1 - α): α = 0.5, k = 2 → 1.75; nothing accepted → one token per step.
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)
    assert expected_tokens(0.0, 8) == pytest.approx(1.0)


def test_unmeasured_widths_keep_the_linear_prior() -> None:
    costs = PassCosts(verify_cost=0.2)
    assert costs.relative(rows=1, width=3) == pytest.approx(1.6)


def test_measured_widths_are_relative_to_a_one_token_pass() -> None:
    costs = PassCosts(verify_cost=0.15, smoothing=1.0)
    costs.record(rows=1, width=0, seconds=0.040)
    costs.record(rows=1, width=2, seconds=0.050)
    assert costs.relative(1, 2) == pytest.approx(1.25)
    assert costs.relative(1, 5) == pytest.approx(1.75)  # untried: the prior
    assert costs.relative(8, 2) == pytest.approx(1.3)  # other row counts are measured apart


def test_without_a_one_token_measurement_widths_are_scaled_through_the_narrowest() -> None:
    costs = PassCosts(verify_cost=0.1, smoothing=1.0)
    costs.record(rows=1, width=2, seconds=0.060)  # prior 1.2: a one-token pass is taken as 0.050
    costs.record(rows=1, width=4, seconds=0.090)
    assert costs.relative(1, 2) == pytest.approx(1.2)
    assert costs.relative(1, 4) == pytest.approx(1.8)


def test_measurements_are_smoothed() -> None:
    costs = PassCosts(smoothing=0.5)
    costs.record(rows=1, width=0, seconds=0.040)
    costs.record(rows=1, width=1, seconds=0.040)
    costs.record(rows=1, width=1, seconds=0.080)
    assert costs.relative(1, 1) == pytest.approx(1.5)


def test_a_width_dearer_than_its_prior_is_dropped_once_measured() -> None:
    # A CPU where 3 columns are cheap but 4 cost 1.8 passes (a matrix-kernel change).
    costs = PassCosts(verify_cost=0.15, smoothing=1.0)
    controller = DraftLengthController(maximum=8, draft_cost=0.0, costs=costs)
    controller.rate = 0.65
    first = controller.next()
    assert first >= 3  # the linear prior favours a long draft
    costs.record(rows=1, width=0, seconds=0.040)
    for width, seconds in ((1, 0.046), (2, 0.049), (first, 0.072)):
        costs.record(rows=1, width=width, seconds=seconds)
    assert controller.next() == 2


def test_drafting_is_stopped_when_no_length_pays() -> None:
    costs = PassCosts(smoothing=1.0)
    costs.record(rows=1, width=0, seconds=0.040)
    for width in range(1, 5):
        costs.record(rows=1, width=width, seconds=0.040 * (1 + 0.6 * width))
    controller = DraftLengthController(maximum=4, draft_cost=0.0, costs=costs)
    controller.rate = 0.5
    assert controller.best_length(controller.rate) == 0


def test_best_width_uses_measured_costs_per_row_count() -> None:
    costs = PassCosts(verify_cost=0.0, smoothing=1.0)
    controller = DraftLengthController(maximum=8, draft_cost=0.0, costs=costs)
    controller.rate = 0.9
    assert controller.best_width([4, 4]) == 4  # free verification: verify everything proposed
    costs.record(rows=2, width=0, seconds=0.040)
    for width in range(1, 5):
        costs.record(rows=2, width=width, seconds=0.040 * (1 + width))
    assert controller.best_width([4, 4]) == 0  # each column costs a whole pass: not worth it


def test_negative_costs_are_refused() -> None:
    with pytest.raises(ConfigError, match="verify_cost"):
        PassCosts(verify_cost=-0.1)
    with pytest.raises(ConfigError, match="draft_cost"):
        DraftLengthController(maximum=4, draft_cost=-1.0)


def test_an_untried_width_costs_at_least_a_narrower_measured_one() -> None:
    costs = PassCosts(verify_cost=0.1, smoothing=1.0)
    costs.record(rows=8, width=0, seconds=0.100)
    costs.record(rows=8, width=1, seconds=0.135)  # 1.35, far above the prior's 1.1
    assert costs.relative(8, 2) == pytest.approx(1.35)  # not the prior's 1.2
    assert costs.relative(8, 6) == pytest.approx(1.6)  # the prior, once it is the dearer
