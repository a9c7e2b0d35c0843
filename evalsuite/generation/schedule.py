"""How many tokens to draft next (γ), and how many of the proposals to verify, from the acceptance rate.

With per-token acceptance rate ``α``, a row that proposes ``k`` tokens emits on average
``E(k) = (1 - α^(k+1)) / (1 - α)`` tokens in a step (Leviathan et al. 2023, eq. 1). A step that
drafts γ tokens and verifies ``w`` columns costs ``1 + γ·c_draft + w·c_verify`` plain decoding
steps: ``c_draft`` is the drafter's relative cost per token, ``c_verify`` the extra cost of
scoring one more column in the target's pass (small on a GPU, larger on a CPU, where a pass is
less memory-bound). Before drafting, γ maximises expected tokens per unit of cost; when no γ
beats plain decoding, γ is 0, with a one-token probe now and then (less often after each failed
probe) so the rate can recover. After drafting, the verified width is chosen again over the rows'
actual proposal lengths, since rows without a proposal (an n-gram lookup that found nothing)
gain nothing from a wide pass. ``α`` is an exponential moving average over steps of accepted /
judged draft tokens, a row's judged tokens being its accepted ones plus the first rejected one
(tokens after a rejection tell nothing about ``α``; counting them would bias it low).

``c_verify`` is not one number: on a CPU a pass over 3 tokens may cost 1.2 one-token passes and
one over 4 tokens 1.8, where the matrix kernels change. :class:`PassCosts` therefore times the
target's passes as they run, by batch rows and verified width, and the measured relative cost
replaces the linear prior for every width tried; an untried width keeps the prior, so a width the
prior overrates is tried once and then judged on its real cost.
"""

from __future__ import annotations

from collections.abc import Sequence

from evalsuite.errors import ConfigError

# Extra cost of verifying one more token, relative to a one-token step. Measured with the
# packaged SmolLM2-135M on CPU (float32, one thread): a 6-token pass costs about 1.8 one-token
# passes, and a batch of 8 rows pays about 0.13 of a step per extra column.
DEFAULT_VERIFY_COST = 0.15
MAX_DRAFT_TOKENS = 64
MAX_PROBE_INTERVAL = 64


class PassCosts:
    """Measured seconds of the target's verification passes, by batch rows and verified width.

    ``relative(rows, width)`` is a pass over ``width`` draft columns in units of a one-token pass
    over the same rows: measured where that width has been timed (an exponential moving average),
    ``1 + width·verify_cost`` where it has not (but never less than a narrower width measured).
    Measured widths are scaled through the narrowest measured one, so a table without a one-token
    measurement still compares widths by real time.

    >>> costs = PassCosts(verify_cost=0.15)
    >>> costs.record(rows=1, width=0, seconds=0.040)
    >>> costs.record(rows=1, width=3, seconds=0.072)
    >>> round(costs.relative(1, 3), 2), round(costs.relative(1, 2), 2)
    (1.8, 1.3)
    """

    def __init__(self, *, verify_cost: float = DEFAULT_VERIFY_COST, smoothing: float = 0.3) -> None:
        if verify_cost < 0:
            raise ConfigError(f"verify_cost must be >= 0, got {verify_cost}")
        self.verify_cost = verify_cost
        self.smoothing = smoothing
        self._seconds: dict[int, dict[int, float]] = {}

    def prior(self, width: int) -> float:
        return 1 + width * self.verify_cost

    def record(self, *, rows: int, width: int, seconds: float) -> None:
        """Fold one timed pass into the average for its (rows, width)."""
        if seconds <= 0:
            return
        table = self._seconds.setdefault(rows, {})
        previous = table.get(width)
        table[width] = seconds if previous is None else previous + self.smoothing * (seconds - previous)

    def relative(self, rows: int, width: int) -> float:
        table = self._seconds.get(rows)
        if not table:
            return self.prior(width)
        anchor = min(table)
        one_token = table[anchor] / self.prior(anchor)
        if width in table:
            return table[width] / one_token
        # A wider pass never costs less than a narrower one: no exploring widths known to be dearer.
        narrower = [seconds / one_token for measured, seconds in table.items() if measured < width]
        return max([self.prior(width), *narrower])


def expected_tokens(rate: float, proposed: int) -> float:
    """Tokens a row emits on average in a step where it proposes ``proposed`` draft tokens."""
    rate = min(max(rate, 0.0), 0.999)
    return (1 - rate ** (proposed + 1)) / (1 - rate)


class DraftLengthController:
    """γ for each step: fixed at ``maximum`` or adapted to the acceptance rate.

    >>> controller = DraftLengthController(maximum=8, draft_cost=0.0)
    >>> for _ in range(10):
    ...     controller.update(judged=8, accepted=8)
    >>> controller.next()
    8
    >>> for _ in range(10):
    ...     controller.update(judged=1, accepted=0)
    >>> controller.next()
    0
    """

    def __init__(
        self,
        *,
        maximum: int,
        draft_cost: float,
        costs: PassCosts | None = None,
        adaptive: bool = True,
        initial_rate: float = 0.6,
        smoothing: float = 0.3,
        probe_every: int = 8,
    ) -> None:
        if not 0 <= maximum <= MAX_DRAFT_TOKENS:
            raise ConfigError(
                f"the number of draft tokens must be between 0 and {MAX_DRAFT_TOKENS}, got {maximum}"
            )
        if draft_cost < 0:
            raise ConfigError(f"draft_cost must be >= 0, got {draft_cost}")
        self.maximum = maximum
        self.draft_cost = draft_cost
        self.costs = costs or PassCosts()
        self.adaptive = adaptive
        self.rate = initial_rate
        self.smoothing = smoothing
        self._probe_interval = probe_every
        self._min_probe_interval = probe_every
        self._idle_steps = 0
        self._probing = False

    def next(self, rows: int = 1) -> int:
        """γ for the coming step over ``rows`` rows."""
        if not self.adaptive or self.maximum == 0:
            return self.maximum
        best = self.best_length(self.rate, rows)
        self._probing = False
        if best == 0:
            self._idle_steps += 1
            if self._idle_steps >= self._probe_interval:
                self._idle_steps = 0
                self._probing = True
                return 1
        return best

    def best_length(self, rate: float, rows: int = 1) -> int:
        """The γ in ``0..maximum`` with the most expected tokens per unit of cost."""
        best, best_speed = 0, 1.0  # γ = 0: one token for one step
        for gamma in range(1, self.maximum + 1):
            cost = self.costs.relative(rows, gamma) + gamma * self.draft_cost
            speed = expected_tokens(rate, gamma) / cost
            if speed > best_speed * 1.0001:
                best, best_speed = gamma, speed
        return best

    def best_width(self, lengths: Sequence[int]) -> int:
        """How many draft columns to verify, given each row's proposal length (drafting is paid for).

        >>> DraftLengthController(maximum=8, draft_cost=0.0).best_width([4, 0, 0, 0, 0, 0, 0, 0])
        0
        """
        widest = max(lengths, default=0)
        if not self.adaptive or widest == 0:
            return widest
        rows = len(lengths)
        best, best_speed = 0, 1.0
        for width in range(1, widest + 1):
            tokens = sum(expected_tokens(self.rate, min(length, width)) for length in lengths)
            speed = tokens / (rows * self.costs.relative(rows, width))
            if speed > best_speed * 1.0001:
                best, best_speed = width, speed
        # A probe is verified even when the estimate says it is not worth it: that is its purpose.
        return max(best, 1) if self._probing else best

    def update(self, *, judged: int, accepted: int) -> None:
        """Record a step's judged and accepted draft tokens (summed over rows)."""
        if judged > 0:
            self.rate += self.smoothing * (accepted / judged - self.rate)
            if self._probing:
                # Back off after a failed probe; probe at the usual pace again after a success.
                failed = accepted == 0
                self._probe_interval = (
                    min(2 * self._probe_interval, MAX_PROBE_INTERVAL) if failed else self._min_probe_interval
                )
