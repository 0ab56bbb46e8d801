"""Where the simulated homes stand: a latitude and longitude for every home.

Each market is a metro area around a centre of its own (drawn from the seed, across the
contiguous United States), a disc holding :data:`HOMES_PER_KM2` homes per square kilometre of
the market's expected share of homeowners. Within it, homes that sold dear for their size and
market (a high price premium) sit nearer the centre, with noise: neighbours resemble each other,
as they do in real cities, which is what comparable sales read.

The draws come from generators of their own (the seed, then 3 for centres and 4 with the block
for homes), so adding coordinates changed no other column of the world.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import ndtr

from roiml.world.macro import Macro

__all__ = ["HOMES_PER_KM2", "locate_homes", "market_centres"]

HOMES_PER_KM2 = 50.0
_KM_PER_DEGREE = 6371.0088 * math.pi / 180
# How strongly the premium orders homes from the centre outwards (0: not at all).
_PREMIUM_PULL = 0.7


def market_centres(seed: int, markets: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of each market's centre, degrees."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    return rng.uniform(30.0, 46.0, markets), rng.uniform(-121.0, -75.0, markets)


def locate_homes(properties: pa.Table, macro: Macro, users: int, seed: int, block: int) -> pa.Table:
    """``properties`` with ``latitude`` and ``longitude`` (degrees, rounded to ~1 m)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4, block]))
    n = properties.num_rows
    codes = pc.index_in(properties["market_id"], value_set=pa.array(macro.market_ids.tolist()))
    market = codes.to_numpy(zero_copy_only=False).astype(np.int64)
    day = (
        (
            pc.cast(properties["purchased_at"], pa.timestamp("us")).to_numpy(zero_copy_only=False)
            - np.datetime64(macro.origin, "us")
        )
        .astype("timedelta64[D]")
        .astype(np.int64)
    )
    day = np.clip(day, 0, macro.market_median.shape[1] - 1)
    sqft = np.maximum(properties["sqft"].to_numpy(zero_copy_only=False).astype(float), 100.0)
    price = properties["purchase_price"].to_numpy(zero_copy_only=False).astype(float)
    # The home's log price premium over its market's median, for its size, when bought.
    expected = macro.market_median[market, day] * (sqft / 1800.0) ** 0.75
    premium = np.log(np.maximum(price, 1.0) / expected)
    # A home of unknown size (a gap in the data) gets the typical premium.
    known = np.isfinite(premium)
    premium = np.where(known, premium, np.median(premium[known]) if known.any() else 0.0)
    spread = float(np.std(premium))
    z = (premium - premium.mean()) / spread if spread > 0 else np.zeros(n)
    # Share of the disc's area inside the home's ring: dear homes near 0, cheap ones near 1.
    noisy = _PREMIUM_PULL * z + math.sqrt(1 - _PREMIUM_PULL**2) * rng.normal(0, 1, n)
    area_share = 1.0 - ndtr(noisy)
    homes = users * macro.market_weights[market]
    radius_km = np.sqrt(np.maximum(homes, 1.0) / (math.pi * HOMES_PER_KM2))
    distance = radius_km * np.sqrt(area_share)
    angle = rng.uniform(0, 2 * math.pi, n)
    lat0, lon0 = market_centres(seed, len(macro.market_ids))
    latitude = lat0[market] + distance * np.sin(angle) / _KM_PER_DEGREE
    longitude = lon0[market] + distance * np.cos(angle) / (
        _KM_PER_DEGREE * np.cos(np.radians(latitude))
    )
    return properties.append_column("latitude", pa.array(latitude.round(5))).append_column(
        "longitude", pa.array(longitude.round(5))
    )
