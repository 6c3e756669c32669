"""The sources `kpiwatch connect` takes and the config-file section each reads: apart from
streams.sources so that the CLI can list them without importing every connector (and aiohttp)
on every command."""

from __future__ import annotations

from typing import Final

SECTIONS: Final[dict[str, str]] = {
    "amazon-sp": "amazon_sp",
    "amazon-ads": "amazon_ads",
    "shopee": "shopee",
    "shopify": "shopify",
    "tiktok": "tiktok",
}
