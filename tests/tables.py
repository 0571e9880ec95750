"""Tables as users have them, generated (nothing is downloaded): text columns, integer columns,
booleans, a row number, dates, and gaps, with a target that depends on both kinds of input."""

import numpy as np
import pandas as pd


def mixed_table(n: int = 240, seed: int = 0, task: str = "classification") -> pd.DataFrame:
    """``n`` rows: ``id`` (a row number), ``island`` and ``sex`` (text, ``sex`` with gaps),
    ``bill_mm`` (floats with gaps), ``mass_g`` (integers), ``tagged`` (yes/no), ``seen``
    (dates) and ``species`` (text) or ``weight`` (numbers) as the target."""
    rng = np.random.default_rng(seed)
    island = rng.choice(["Biscoe", "Dream", "Torgersen"], n)
    sex = rng.choice(["male", "female"], n).astype(object)
    bill = rng.normal(44, 5, n)
    mass = rng.integers(2700, 6300, n)
    signal = (
        (bill - 44) / 5 + (island == "Dream") * 1.5 - (island == "Torgersen") + (mass - 4500) / 900
    )
    frame = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "island": island,
            "sex": sex,
            "bill_mm": bill.round(1),
            "mass_g": mass,
            "tagged": rng.choice(["yes", "no"], n),
            "seen": pd.date_range("2021-03-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        }
    )
    if task == "classification":
        frame["species"] = np.where(signal + rng.normal(0, 0.3, n) > 0, "Chinstrap", "Adelie")
    else:
        frame["weight"] = (signal * 10 + rng.normal(0, 1, n)).round(2)
    frame.loc[rng.random(n) < 0.08, "sex"] = None
    frame.loc[rng.random(n) < 0.05, "bill_mm"] = np.nan
    return frame
