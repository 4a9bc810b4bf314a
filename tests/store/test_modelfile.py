"""Modelfile parsing and printing, and the Go-template subset."""

from __future__ import annotations

import pytest

from slmkit.errors import ModelfileError, TemplateSyntaxError
from slmkit.store.modelfile import Profile, parse_modelfile
from slmkit.store.template import ProfileTemplate, go_to_jinja

MODELFILE = '''# a comment
FROM smollm2-135m-instruct
PARAMETER temperature 0.2
PARAMETER top_k 20
PARAMETER num_ctx 512
PARAMETER stop "<|im_end|>"
PARAMETER stop "User:"
SYSTEM """You are a pirate.
Answer in one line."""
MESSAGE user Hello
MESSAGE assistant "Ahoy!"
LICENSE apache-2.0
'''

CHATML_GO = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range $i, $m := .Messages }}{{- if ne $m.Role \"system\" }}<|im_start|>{{ $m.Role }}\n"
    "{{ $m.Content }}<|im_end|>\n{{ end }}{{ end }}<|im_start|>assistant\n"
)
MESSAGES = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"}, {"role": "user", "content": "again"}]


def test_parse_modelfile() -> None:
    profile = parse_modelfile(MODELFILE)
    assert profile.from_ == "smollm2-135m-instruct"
    assert profile.parameters == {"temperature": 0.2, "top_k": 20, "num_ctx": 512, "stop": ["<|im_end|>", "User:"]}
    assert profile.system == "You are a pirate.\nAnswer in one line."
    assert profile.messages == [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Ahoy!"}]
    assert profile.license == "apache-2.0"
    assert profile.num_ctx == 512
    assert profile.request_defaults() == {"temperature": 0.2, "top_k": 20, "stop": ["<|im_end|>", "User:"]}


def test_modelfile_round_trips() -> None:
    profile = parse_modelfile(MODELFILE)
    again = parse_modelfile(profile.to_modelfile())
    assert again == profile


def test_profile_layers_over_its_base() -> None:
    base = Profile(parameters={"temperature": 0.9, "seed": 1}, system="base", template="T")
    child = Profile(from_="x", parameters={"temperature": 0.1})
    merged = child.over(base)
    assert merged.parameters == {"temperature": 0.1, "seed": 1}
    assert merged.system == "base" and merged.template == "T"


@pytest.mark.parametrize(("text", "message"), [
    ("PARAMETER temperature 0.5\n", "needs a FROM"),
    ("FROM x\nPARAMETER warmth 3\n", "unknown PARAMETER 'warmth'"),
    ("FROM x\nPARAMETER top_k many\n", "top_k needs a int"),
    ("FROM x\nFROBNICATE y\n", "line 2: unknown instruction 'FROBNICATE'"),
    ("FROM x\nSYSTEM \"\"\"never closed\n", "unterminated"),
    ("FROM x\nMESSAGE narrator hi\n", "MESSAGE role"),
    ("FROM x\nADAPTER ./lora.gguf\n", "ADAPTER"),
])
def test_bad_modelfiles_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ModelfileError, match=message):
        parse_modelfile(text)


def test_go_template_with_messages_renders_like_chatml() -> None:
    rendered = ProfileTemplate(CHATML_GO).render(MESSAGES)
    assert rendered == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                        "<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n"
                        "<|im_start|>assistant\n")


def test_legacy_prompt_response_template_renders_each_turn() -> None:
    source = "{{ if .System }}<<SYS>>{{ .System }}<</SYS>>{{ end }}[INST] {{ .Prompt }} [/INST] {{ .Response }}</s>"
    assert ProfileTemplate(source).render(MESSAGES) == "<<SYS>>S<</SYS>>[INST] hi [/INST] yo</s>[INST] again [/INST] "


def test_go_range_with_dot_and_functions() -> None:
    source = ('{{- range .Messages }}{{ if eq .Role "user" }}U: {{ .Content }}{{ else if eq .Role "assistant" }}'
              "A: {{ .Content }}{{ end }}\n{{ end }}{{ if and .System (not .Prompt) }}never{{ end }}A:")
    assert ProfileTemplate(source).render(MESSAGES[1:3]) == "U: hi\nA: yo\nA:"


def test_jinja_templates_are_used_as_they_are() -> None:
    source = ("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
              "{% if add_generation_prompt %}>{% endif %}")
    assert ProfileTemplate(source).render(MESSAGES[1:2]) == "[user]hi>"


@pytest.mark.parametrize("source", ["{{ if .System }}never closed", "{{ end }}", "{{ printf \"%s\" .System }}x{{ if"])
def test_bad_go_templates_are_refused(source: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        ProfileTemplate(source)


def test_go_to_jinja_maps_fields() -> None:
    assert go_to_jinja("{{- .System -}}") == "{{- System -}}"
    assert go_to_jinja("{{ $.System }}") == "{{ System }}"
