"""Checks of single `TrainConfig` values: each raises a `ValueError` naming the setting, what it needs and what came."""

import math


def check_parts(parts, variant):
    """A non-empty sequence of distinct names, for variant mmga; the names themselves are the data side's."""
    if isinstance(parts, str) or not isinstance(parts, (tuple, list)) or not parts \
            or not all(isinstance(p, str) and p for p in parts):
        raise ValueError(f"parts must be a non-empty tuple of part-group names (e.g. ('head', 'torso', 'legs', "
                         f"'feet')) or None, got {parts!r}.")
    repeated = sorted({p for p in parts if list(parts).count(p) > 1})
    if repeated:
        raise ValueError(f"parts names each part group once; {repeated} appear more than once in {tuple(parts)!r}.")
    if variant != "mmga":
        raise ValueError(f"parts is a setting of variant 'mmga' (its part branches); variant {variant!r} has "
                         f"{'the fixed halves upper/bottom' if variant == 'dmga' else 'no parts'}: leave parts None.")


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def choice(config, name, choices):
    value = getattr(config, name)
    if value not in choices or isinstance(value, bool):
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def number(config, name, low=None, high=None, low_open=False, high_open=False):
    """A real number in the given range, or a `ValueError` naming the setting and the range."""
    value = getattr(config, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "∞)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be a finite number in {lo}, {hi}, got {value!r}.")
