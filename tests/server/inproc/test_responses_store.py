"""Stored responses in process: retrieve, delete, input_items, previous_response_id, one key's
responses hidden from another, the count and age bounds; and the guard on the Responses door
(scopes, rate limits, metrics, the audit log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.inprocess import MODEL, Engines, ManualClock, app_client, make_key, make_profile, settings
from tests.openapi import validate

pytestmark = pytest.mark.asyncio
TOOL = {"type": "function", "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def body(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": text, **extra}


def check_404(r: Any) -> None:
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["code"] == "not_found"


async def test_retrieve_input_items_delete(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        items = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "first"},
                 {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second"}]}]
        created = (await client.post("/v1/responses", json=body(items))).json()
        got = await client.get(f"/v1/responses/{created['id']}")
        assert got.status_code == 200 and got.json() == created
        listed = (await client.get(f"/v1/responses/{created['id']}/input_items")).json()
        validate("ResponseItemList", listed)
        texts = [i["content"][0]["text"] for i in listed["data"]]
        assert texts == ["second", "first", "Be brief."]  # newest first, as OpenAI lists them
        assert listed["first_id"] == listed["data"][0]["id"] and listed["has_more"] is False
        page = (await client.get(f"/v1/responses/{created['id']}/input_items",
                                 params={"order": "asc", "limit": 2})).json()
        assert [i["content"][0]["text"] for i in page["data"]] == ["Be brief.", "first"] and page["has_more"]
        rest = (await client.get(f"/v1/responses/{created['id']}/input_items",
                                 params={"order": "asc", "after": page["last_id"]})).json()
        assert [i["content"][0]["text"] for i in rest["data"]] == ["second"]
        r = await client.delete(f"/v1/responses/{created['id']}")
        assert r.json() == {"id": created["id"], "object": "response", "deleted": True}
        check_404(await client.get(f"/v1/responses/{created['id']}"))
        check_404(await client.delete(f"/v1/responses/{created['id']}"))
        check_404(await client.get(f"/v1/responses/{created['id']}/input_items"))


async def test_streamed_responses_are_stored_and_store_false_is_not(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/responses", json=body(stream=True))
        final = json.loads(r.text.strip().split("\n\n")[-1].split("data: ", 1)[1])["response"]
        assert (await client.get(f"/v1/responses/{final['id']}")).json() == final
        unstored = (await client.post("/v1/responses", json=body(store=False))).json()
        assert unstored["store"] is False
        check_404(await client.get(f"/v1/responses/{unstored['id']}"))


async def test_previous_response_id_continues_the_conversation(home: Path, engines: Engines) -> None:
    engines.reply = "My name is Fake."
    async with app_client(settings(home)) as client:
        first = (await client.post("/v1/responses", json=body("what is your name?", instructions="OLD"))).json()
        r = await client.post("/v1/responses", json=body("and again?", previous_response_id=first["id"],
                                                         instructions="NEW"))
        assert r.status_code == 200 and r.json()["previous_response_id"] == first["id"]
        prompt = engines[MODEL].detokenize(engines[MODEL].requests[-1].prompt)
        assert prompt.index("what is your name?") < prompt.index("My name is Fake.") < prompt.index("and again?")
        assert "NEW" in prompt and "OLD" not in prompt  # instructions are not carried over (as OpenAI)
        listed = (await client.get(f"/v1/responses/{r.json()['id']}/input_items")).json()
        assert [i["content"][0]["text"] for i in listed["data"]] == ["and again?"]  # its own input only
        r = await client.post("/v1/responses", json=body(previous_response_id="resp_nope"))
        check_404(r)
        assert r.json()["error"]["param"] == "previous_response_id"
    assert len(engines[MODEL].requests) == 2  # the unknown id never reached the engine


async def test_function_tool_round_trip_with_previous_response_id(home: Path, engines: Engines) -> None:
    engines.reply = CALL
    async with app_client(settings(home)) as client:
        first = (await client.post("/v1/responses", json=body("weather in Paris?", tools=[TOOL],
                                                              tool_choice="required"))).json()
        [call] = first["output"]
        assert call["type"] == "function_call" and json.loads(call["arguments"]) == {"city": "Paris"}
        engines[MODEL].reply = "It is sunny in Paris."
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"sky": "sunny"}'}
        r = await client.post("/v1/responses", json=body([output], tools=[TOOL], previous_response_id=first["id"]))
        assert r.status_code == 200, r.text
        assert r.json()["output"][0]["content"][0]["text"] == "It is sunny in Paris."
        prompt = engines[MODEL].detokenize(engines[MODEL].requests[-1].prompt)
        assert prompt.index("weather in Paris?") < prompt.index('"city": "Paris"') < prompt.index('"sky": "sunny"')


async def test_a_key_sees_only_its_own_responses(home: Path, engines: Engines) -> None:
    config = settings(home)
    alice, bob = make_key(config), make_key(config)
    async with app_client(config, alice) as client:
        mine = (await client.post("/v1/responses", json=body())).json()
        assert (await client.get(f"/v1/responses/{mine['id']}")).status_code == 200
    async with app_client(config, bob) as client:
        check_404(await client.get(f"/v1/responses/{mine['id']}"))
        check_404(await client.get(f"/v1/responses/{mine['id']}/input_items"))
        check_404(await client.delete(f"/v1/responses/{mine['id']}"))
        check_404(await client.post("/v1/responses", json=body(previous_response_id=mine["id"])))
        assert not engines[MODEL].requests  # nothing reached bob's server's engine
    async with app_client(config) as client:  # no key at all: 401
        r = await client.get(f"/v1/responses/{mine['id']}")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    async with app_client(config, alice) as client:
        assert (await client.get(f"/v1/responses/{mine['id']}")).status_code == 200  # bob's delete did nothing


async def test_count_and_age_bounds(home: Path, engines: Engines) -> None:
    clock = ManualClock()
    async with app_client(settings(home, responses__max_count=2, responses__max_age_s=60), None, clock) as client:
        ids = [(await client.post("/v1/responses", json=body())).json()["id"] for _ in range(3)]
        check_404(await client.get(f"/v1/responses/{ids[0]}"))  # the oldest went
        assert (await client.get(f"/v1/responses/{ids[2]}")).status_code == 200
        clock.advance(61)
        check_404(await client.get(f"/v1/responses/{ids[2]}"))


# -- the guard applies to this door as to every other -----------------------------------------
async def test_scope_rate_limit_metrics_and_audit(home: Path, engines: Engines) -> None:
    make_profile(home, "tuned", f"FROM {MODEL}\n")
    audit = home / "audit.jsonl"
    config = settings(home, security__audit_log=audit)
    key = make_key(config, models=["tuned"], rpm=1)
    async with app_client(config, key) as client:
        r = await client.post("/v1/responses", json=body())
        assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
        assert r.json()["error"]["param"] == "model"
        assert (await client.post("/v1/responses", json={**body(), "model": "tuned"})).status_code == 200
        r = await client.post("/v1/responses", json={**body(), "model": "tuned"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert "retry-after" in r.headers
    assert MODEL not in engines.opened or not engines[MODEL].requests
    async with app_client(config, make_key(config)) as client:  # another key, unscoped
        assert (await client.post("/v1/responses", json=body())).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert any(line.startswith("slm_requests_total{") and f'model="{MODEL}"' in line and 'finish_reason="stop"' in line
               and not line.endswith(" 0.0") for line in metrics.splitlines())
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    routes = [(line["route"], line["status"]) for line in lines]
    assert routes[:4] == [("POST /v1/responses", 403), ("POST /v1/responses", 200), ("POST /v1/responses", 429),
                          ("POST /v1/responses", 200)]
    assert lines[1]["model"] == "tuned" and lines[1]["prompt_tokens"] > 0 and lines[1]["generated_tokens"] > 0
