"""The push receivers share one base: one POST route with a body limit, a delivery handed off
once (a repeat, or a repeat while the first is still in flight, is answered as done), and a
key remembered only once its delivery was answered 2xx."""

from __future__ import annotations

import asyncio

from aiohttp import web

from connectors.amazon_ads_stream import FirehoseReceiver
from connectors.push import PushReceiver
from connectors.shopee import ShopeePush
from connectors.shopify import ShopifyWebhooks
from connectors.tiktok import TikTokWebhooks


def test_every_receiver_is_a_push_receiver() -> None:
    for receiver in (ShopifyWebhooks, TikTokWebhooks, ShopeePush, FirehoseReceiver):
        assert issubclass(receiver, PushReceiver)


async def test_a_key_is_delivered_once_and_remembered_only_after_a_2xx() -> None:
    receiver = PushReceiver("/hook", remember=10)
    calls: list[str] = []
    release = asyncio.Event()

    async def slow() -> web.Response:
        calls.append("slow")
        await release.wait()
        return web.Response(status=200)

    first = asyncio.create_task(receiver.once("k1", slow))
    await asyncio.sleep(0)
    assert receiver.repeated("k1")  # still in flight: answered as done, not delivered twice
    release.set()
    assert (await first).status == 200
    assert receiver.repeated("k1")  # handed off: remembered

    async def failing() -> web.Response:
        calls.append("failing")
        return web.Response(status=503)

    assert (await receiver.once("k2", failing)).status == 503
    assert not receiver.repeated("k2")  # the platform's retry must get through
    assert not receiver.repeated("")  # no key: never taken for a repeat
    assert calls == ["slow", "failing"]
    assert receiver.duplicates == 2
    assert [r.resource.canonical for r in receiver.app().router.routes()] == ["/hook"]
