"""The Atlas emulator checks a data registration as the test-runs page says: required fields with
their types (422 in FastAPI's shape), and an association only with a card and a step of that run (a
step with its card given must be in that card); a good one is stored and listed."""

from __future__ import annotations

from typing import Any

import aiohttp
from e2e_helpers import SYSTEM_ID, TOKEN

from edge_agent.emulators.atlas import AtlasEmulator


async def _call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, path, json=body) as resp:
        return resp.status, await resp.json() if resp.status != 204 else None


async def test_registration_is_validated_and_stored(atlas: AtlasEmulator) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(atlas.api_url + "/", headers=headers) as http:
        runs, cards, steps = [], [], []
        for n in range(2):
            _, run = await _call(http, "POST", "test-runs", {"title": f"r{n}", "system_id": SYSTEM_ID})
            _, card = await _call(http, "POST", f"test-runs/{run['uuid']}/cards", {"title": "c"})
            _, step = await _call(
                http, "POST", f"test-runs/{run['uuid']}/cards/{card['uuid']}/steps", {"title": "s"}
            )
            runs.append(run["uuid"]), cards.append(card["uuid"]), steps.append(step["uuid"])
        _, other_card = await _call(http, "POST", f"test-runs/{runs[0]}/cards", {"title": "c2"})
        data = f"test-runs/{runs[0]}/data"
        good = {"file_name": "a.csv.gz", "s3_url": "s3://b/a.csv.gz", "file_size": 10}

        async def refused(body: dict[str, Any], loc: list[str]) -> None:
            status, answer = await _call(http, "POST", data, body)
            assert status == 422, (status, answer)
            assert any(item["loc"][: len(loc)] == loc for item in answer["detail"]), answer

        await refused({k: v for k, v in good.items() if k != "s3_url"}, ["body", "s3_url"])
        await refused({k: v for k, v in good.items() if k != "file_name"}, ["body", "file_name"])
        await refused({**good, "file_size": "ten"}, ["body", "file_size"])
        await refused({**good, "file_size": -1}, ["body", "file_size"])
        await refused({**good, "associate_with": {"test_card_id": cards[1]}}, ["body", "associate_with"])
        await refused({**good, "associate_with": {"test_step_id": steps[1]}}, ["body", "associate_with"])
        wrong_card = {"test_card_id": other_card["uuid"], "test_step_id": steps[0]}
        await refused({**good, "associate_with": wrong_card}, ["body", "associate_with"])
        assoc = {"test_card_id": cards[0], "test_step_id": steps[0]}
        status, stored = await _call(
            http, "POST", data, {**good, "associate_with": assoc, "content_type": "application/gzip"}
        )
        assert status == 201 and stored["associations"] == [assoc] and stored["file_size"] == 10
        status, listing = await _call(http, "GET", data)
        assert status == 200 and listing["count"] == 1 and listing["items"][0]["uuid"] == stored["uuid"]
