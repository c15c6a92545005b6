"""Exploration-rate schedules evaluated at a number of environment steps."""


class DecayThenFlatSchedule:
    """Move from ``start`` to ``finish`` over ``time_length`` steps, then stay at ``finish``.

    ``decay="linear"`` interpolates linearly; ``decay="exp"`` interpolates geometrically,
    ``start ** (1 - p) * finish ** p`` with ``p = T / time_length``, so it needs positive
    ``start`` and ``finish``.
    """

    def __init__(self, start, finish, time_length, decay="linear"):
        if decay not in ("linear", "exp"):
            raise ValueError(f"decay must be 'linear' or 'exp', got {decay!r}")
        if decay == "exp" and (start <= 0 or finish <= 0):
            raise ValueError("an 'exp' schedule needs start > 0 and finish > 0")
        self.start = start
        self.finish = finish
        self.time_length = time_length
        self.decay = decay

    def eval(self, T):
        progress = 1.0 if self.time_length <= 0 else min(max(T / self.time_length, 0.0), 1.0)
        if self.decay == "linear":
            return (1.0 - progress) * self.start + progress * self.finish
        return self.start ** (1.0 - progress) * self.finish ** progress
