"""Prompts: a chat rendered with the served profile and tools, or plain text, as token ids."""

from __future__ import annotations

from typing import Any

from slmkit.engine.base import Engine
from slmkit.errors import InvalidRequest
from slmkit.server.tools import ToolPlan, prepare_messages
from slmkit.store.modelfile import Profile
from slmkit.store.template import ProfileTemplate


def profile_messages(profile: Profile, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The profile's SYSTEM (unless the request has its own) and MESSAGE history before the request's."""
    has_system = any(m.get("role") == "system" for m in messages)
    head = [] if has_system or not profile.system else [{"role": "system", "content": profile.system}]
    history = [dict(m) for m in profile.messages]
    if has_system and history:
        first, rest = messages[0], messages[1:]
        return [first, *history, *rest] if first.get("role") == "system" else [*history, *messages]
    return [*head, *history, *messages]


def render(engine: Engine, messages: list[dict[str, Any]], plan: ToolPlan | None,
           template: ProfileTemplate | None, continue_final: bool = False) -> list[int]:
    """Tools go through ``server.tools``; a served profile's TEMPLATE wins over the model's own.
    ``continue_final``: a final assistant message is left open (prefill): the answer continues it."""
    if continue_final and len(messages) > 1 and messages[-1].get("role") == "assistant":
        head = render(engine, messages[:-1], plan, template)
        return head + engine.tokenize(str(messages[-1].get("content") or ""), add_special=False,
                                      parse_special=False)
    tools = None
    if plan is not None or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages):
        messages, tools = prepare_messages(engine, messages, plan)
    if template is not None:
        return engine.chat_tokens(template.render(messages, add_generation_prompt=True))
    return engine.chat_tokens(engine.render_chat(messages, add_generation_prompt=True, tools=tools))


def chat_tokens(engine: Engine, messages: list[dict[str, Any]], *, profile: Profile | None,
                template: ProfileTemplate | None, plan: ToolPlan | None, truncate: bool,
                room: int, limit: int | None = None, continue_final: bool = False) -> list[int]:
    """The chat's prompt. With ``truncate``, the oldest non-system messages are dropped (the
    last one always stays), then the last message's start, until the prompt and ``room`` tokens
    of answer fit ``limit`` (the context length unless smaller)."""
    if profile is not None:
        messages = profile_messages(profile, messages)
    tokens = render(engine, messages, plan, template, continue_final)
    limit = min(limit or engine.context_length, engine.context_length)
    if not truncate:
        return tokens
    messages = list(messages)
    while len(tokens) + room > limit:
        droppable = [i for i, m in enumerate(messages[:-1]) if m.get("role") != "system"]
        if not droppable:
            break
        del messages[droppable[0]]
        tokens = render(engine, messages, plan, template, continue_final)
    while len(tokens) + room > limit and messages and messages[-1].get("role") != "system":
        content = messages[-1].get("content")
        if not isinstance(content, str) or not content:
            break
        ids = engine.tokenize(content, add_special=False, parse_special=False)
        cut = max(1, len(tokens) + room - limit)  # at least one token per round: re-tokenizing may merge
        messages[-1] = {**messages[-1], "content": engine.detokenize(ids[cut:]) if cut < len(ids) else ""}
        tokens = render(engine, messages, plan, template, continue_final)
    return tokens


def keep_end(engine: Engine, tokens: list[int], size: int) -> list[int]:
    """The last ``size`` tokens, after the BOS the model wants when the prompt starts with it
    (unchanged when it fits, or when nothing would be left: the context check says why)."""
    if len(tokens) <= size or size < 1:
        return tokens
    head = engine.tokenize("", add_special=True, parse_special=False)
    if tokens[:len(head)] != head or size <= len(head):
        return tokens[-size:]
    return [*head, *tokens[len(tokens) - (size - len(head)):]]


def text_tokens(engine: Engine, prompt: str | list[int], *, parse_special: bool, param: str) -> list[int]:
    """A text prompt's tokens (with the BOS the model wants), or checked token ids."""
    if isinstance(prompt, str):
        return engine.tokenize(prompt, add_special=True, parse_special=parse_special)
    engine.info.check_tokens(prompt, param)
    return list(prompt)


def check_context(engine: Engine, prompt: list[int], max_tokens: int | None, param: str) -> None:
    """400 for an empty prompt, ``context_length_exceeded`` when prompt + answer cannot fit."""
    from slmkit.errors import ContextLengthExceeded

    limit = engine.context_length
    if not prompt:
        raise InvalidRequest(f"the {param} are empty", param=param)
    wanted = len(prompt) + (max_tokens or 1)
    if wanted > limit:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{wanted} tokens ({len(prompt)} in the {param}, {max_tokens or 1} for the completion). "
            f"Please reduce the length of the {param} or max_tokens.",
            param=param,
        )
