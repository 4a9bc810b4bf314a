"""The chat session behind `slm run`: one answer, or Ollama's interactive commands.

Answers stream through ``Model.astream`` on the session's own event loop, so Ctrl-C cancels
the running answer (its slot is freed at the engine's next step) and returns to the prompt;
a second Ctrl-C during the same answer leaves at once.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from typing import Any

from slmkit.api.model import Model
from slmkit.errors import SlmkitError
from slmkit.store.modelfile import PARAMETERS, REQUEST_FIELDS

HELP = """Available commands:
  /set system <text>          set the system message
  /set parameter <name> <v>   set a parameter (temperature, top_k, top_p, min_p, num_predict, seed, stop, ...)
  /show info                  details of the model
  /show parameters            the parameters in effect
  /show system                the system message
  /show template              the chat template
  /clear                      forget the conversation
  /load <model>               switch to another model
  /bye                        leave (also Ctrl-D, or Ctrl-C at the prompt)
  /?, /help                   this help

Ctrl-C while an answer streams stops that answer. Begin a multi-line message with \"\"\"."""


class Session:
    """A conversation with a loaded model: system message, options and history."""

    def __init__(self, model: Model, engine_options: dict[str, Any], *, system: str | None = None,
                 options: dict[str, Any] | None = None) -> None:
        self.model = model
        self.engine_options = engine_options
        self.system = system
        self.options: dict[str, Any] = dict(options or {})  # the request fields the user set
        self.history: list[dict[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self.interactive = sys.stdin.isatty()

    # -- one answer ----------------------------------------------------------------------
    def one_shot(self, text: str) -> None:
        if not self.answer(text):
            raise SystemExit(130)

    def answer(self, text: str) -> bool:
        """Stream the answer to ``text``; False when Ctrl-C stopped it (the turn is then dropped)."""
        messages = [*self._messages(), {"role": "user", "content": text}]
        parts: list[str] = []
        finish: list[str] = []
        stream = self.model.astream(messages, **self.options)  # a bad request raises here

        async def consume() -> None:
            async for chunk in stream:
                if chunk.text:
                    parts.append(chunk.text)
                    sys.stdout.write(chunk.text)
                    sys.stdout.flush()
                if chunk.finish_reason:
                    finish.append(chunk.finish_reason)

        task = self.loop.create_task(consume())
        presses = 0

        def on_sigint() -> None:
            nonlocal presses
            presses += 1
            if presses > 1:  # the answer does not stop: leave now
                sys.stdout.write("\n")
                sys.stdout.flush()
                os._exit(130)
            task.cancel()

        self.loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            self.loop.run_until_complete(task)
        except asyncio.CancelledError:
            sys.stdout.write("\n")
            sys.stdout.flush()
            return False
        finally:
            self.loop.remove_signal_handler(signal.SIGINT)
        sys.stdout.write("\n")
        sys.stdout.flush()
        if finish and finish[-1] == "length":
            more = "/set parameter num_predict N" if self.interactive else "--max-tokens N"
            print(f"[answer cut at the token limit: {more} for more]", file=sys.stderr, flush=True)
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": "".join(parts)}]
        return True

    def _messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return head + self.history

    # -- the interactive loop --------------------------------------------------------------
    def repl(self) -> None:
        if self.interactive:
            import readline  # noqa: F401  (line editing and history for input())

            print(f"chatting with {self.model.name}; /? for help, /bye or Ctrl-D to leave", file=sys.stderr)
        while True:
            try:
                line = self._read()
            except (EOFError, KeyboardInterrupt):
                if self.interactive:
                    print(file=sys.stderr)
                return
            if line is None:
                continue
            if line.startswith("/"):
                if self.command(line) == "bye":
                    return
                continue
            try:
                self.answer(line)
            except SlmkitError as exc:
                print(f"error: {exc.message}", file=sys.stderr, flush=True)

    def _read(self) -> str | None:
        prompt = ">>> " if self.interactive else ""
        line = input(prompt)
        if line.lstrip().startswith('"""'):  # a multi-line message, as in Ollama
            lines = [line.lstrip()[3:]]
            while not lines[-1].rstrip().endswith('"""'):
                lines.append(input("... " if self.interactive else ""))
            lines[-1] = lines[-1].rstrip()[:-3]
            line = "\n".join(lines)
        return line.strip() or None

    # -- commands ---------------------------------------------------------------------------
    def command(self, line: str) -> str | None:
        """Run one /command; ``"bye"`` when the session should end."""
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word in ("/bye", "/exit"):
            return "bye"
        if word in ("/?", "/help"):
            say(HELP)
        elif word == "/clear":
            self.history.clear()
            say("Cleared session context")
        elif word == "/set":
            self._set(rest)
        elif word == "/show":
            self._show(rest)
        elif word == "/load":
            self._load(rest)
        else:
            say(f"Unknown command '{word}'. Type /? for help")
        return None

    def _set(self, rest: str) -> None:
        what, _, value = rest.partition(" ")
        value = value.strip()
        if what == "system" and value:
            self.system = value.strip('"')
            say("Set system message.")
        elif what == "parameter":
            self._set_parameter(value)
        else:
            say("Usage: /set system <text> | /set parameter <name> <value>")

    def _set_parameter(self, text: str) -> None:
        try:
            name, *values = shlex.split(text)
        except ValueError:
            name, values = "", []
        if not values or name not in PARAMETERS:
            say(f"Usage: /set parameter <name> <value>; names: {', '.join(sorted(REQUEST_FIELDS))}")
            return
        if name not in REQUEST_FIELDS:
            say(f"{name} is fixed when the model loads: start again with --ctx-size, or /load the model")
            return
        try:
            parsed = [PARAMETERS[name](v) for v in values]
        except ValueError:
            say(f"'{' '.join(values)}' is not a valid value for {name}")
            return
        field = REQUEST_FIELDS[name]
        self.options[field] = parsed if name == "stop" else parsed[0]
        say(f"Set parameter '{name}' to '{', '.join(values)}'")

    def _show(self, what: str) -> None:
        profile = self.model.profile
        if what == "info":
            info = self.model.info
            params = info.get("parameters")
            lines = [f"  model         {self.model.name}",
                     f"  architecture  {info.get('architecture') or '?'}",
                     f"  parameters    {params / 1e6:.0f}M" if isinstance(params, int) else "",
                     f"  quantization  {info.get('description') or info.get('format') or '?'}",
                     f"  context       {self.model.context_length} tokens per slot"]
            say("\n".join(line for line in lines if line))
        elif what == "parameters":
            merged = dict(profile.parameters) if profile else {}
            fields = {v: k for k, v in REQUEST_FIELDS.items()}
            merged.update({fields.get(k, k): v for k, v in self.options.items()})
            say("\n".join(f"  {k:<18} {v}" for k, v in merged.items()) or "No parameters set (model defaults).")
        elif what == "system":
            system = self.system if self.system is not None else (profile.system if profile else None)
            say(system or "No system message was specified for this model.")
        elif what == "template":
            say(self.model.chat_template or "No chat template (ChatML is used).")
        else:
            say("Usage: /show info | parameters | system | template")

    def _load(self, name: str) -> None:
        import slmkit

        if not name:
            say("Usage: /load <model>")
            return
        say(f"Loading model '{name}'")
        try:
            model = slmkit.load(name, **self.engine_options)
        except SlmkitError as exc:
            say(f"error: {exc.message}")
            return
        self.model.close()
        self.model = model
        self.history.clear()

    def close(self) -> None:
        try:
            self.model.close()
        finally:
            self.loop.close()


def say(text: str) -> None:
    """A message of the session (not model output): stderr, so a pipe carries only answers."""
    print(text, file=sys.stderr, flush=True)
