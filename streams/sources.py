"""The sources `kpiwatch connect SOURCE` can run: each connector module defines its config file
section and its builder next to the code it configures (connectors/building.py says what they
share); this is the list `streams.connect` looks a source up in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from connectors.amazon_ads import AmazonAdsSection, build_amazon_ads
from connectors.amazon_sp import AmazonSpSection, build_amazon_sp_reported
from connectors.building import Built, Context, Section
from connectors.shopee import ShopeeSection, build_shopee
from connectors.shopify import ShopifySection, build_shopify
from connectors.tiktok import TikTokSection, build_tiktok
from streams.sourcenames import SECTIONS

__all__ = ["SOURCES", "Built", "Context", "Section", "SourceKind"]


@dataclass(frozen=True)
class SourceKind:
    key: str  # the section's key in the file
    model: type[Section]
    build: Callable[[Any, Context], Awaitable[Built]]


_BUILDERS: Final[dict[str, tuple[type[Section], Callable[[Any, Context], Awaitable[Built]]]]] = {
    "amazon-sp": (AmazonSpSection, build_amazon_sp_reported),
    "amazon-ads": (AmazonAdsSection, build_amazon_ads),
    "shopee": (ShopeeSection, build_shopee),
    "shopify": (ShopifySection, build_shopify),
    "tiktok": (TikTokSection, build_tiktok),
}
SOURCES: Final[dict[str, SourceKind]] = {
    name: SourceKind(SECTIONS[name], *_BUILDERS[name]) for name in SECTIONS
}
