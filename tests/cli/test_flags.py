"""One flag vocabulary and output a person reads: hidden old spellings, `slm deploy k8s --help`,
SLM_ variables, a port in use, keys (in process, through click's runner)."""

from __future__ import annotations

import socket
from pathlib import Path

from click.testing import CliRunner, Result

from slmkit.cli.main import cli


def _slm(*args: str, home: Path, **env: str) -> Result:
    """In process: SLM_HOME is read when slmkit is imported, so the store is SLM_STORE__HOME here."""
    return CliRunner().invoke(cli, list(args), env={"SLM_STORE__HOME": str(home), "COLUMNS": "200", **env},
                              prog_name="slm")


def test_old_spellings_work_but_are_not_shown(tmp_path: Path) -> None:
    new = _slm("models", "estimate", "qwen3-8b", "--ctx-size", "2048", "--json", home=tmp_path)
    old = _slm("models", "estimate", "qwen3-8b", "--ctx", "2048", "--json", home=tmp_path)
    assert new.exit_code == old.exit_code == 0 and new.output == old.output
    shown = _slm("quantize", "--help", home=tmp_path).output
    assert "--quant" in shown and "--type" not in shown
    convert = _slm("convert", "--help", home=tmp_path).output
    assert "--quant" in convert and "--precision" not in convert and "--outtype" not in convert


def test_deploy_k8s_help_names_the_target_with_choices_and_defaults(tmp_path: Path) -> None:
    out = _slm("deploy", "k8s", "--help", home=tmp_path).output
    assert out.startswith("Usage: slm deploy k8s --model NAME [OPTIONS]")
    assert "[llamacpp|vllm]" in out and "[default: llamacpp]" in out and "--ctx-size" in out
    assert "--parallel" in out and "[default: 4]" in out and "--slots" not in out


def test_slm_variables_bad_and_unknown(tmp_path: Path) -> None:
    bad = _slm("list", home=tmp_path, SLM_ENGINE__PARALLEL="many")
    assert bad.exit_code == 1 and "SLM_ENGINE__PARALLEL='many'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    typo = _slm("list", home=tmp_path, SLM_ENGINE__PARALEL="4")
    assert typo.exit_code == 0 and "warning: SLM_ENGINE__PARALEL is not a setting" in typo.output


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _slm("serve", "--port", str(port), home=tmp_path)
    assert out.exit_code == 1 and f"port {port} on 127.0.0.1 is in use" in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_first_key_says_it_turns_on_auth_and_list_is_plain(tmp_path: Path) -> None:
    first = _slm("keys", "create", "--name", "web[app]", "--models", "a,b", home=tmp_path)
    assert (tmp_path / "keys.sqlite").is_file()  # never the session's store: that would turn keys on there
    assert first.exit_code == 0 and "turns on authentication for every server" in first.output
    assert "(web[app])" in first.output  # brackets print literally
    second = _slm("keys", "create", "--name", "other", home=tmp_path)
    assert "turns on authentication" not in second.output
    listing = _slm("keys", "list", home=tmp_path).output
    assert "a, b" in listing and "['a'" not in listing and "web[app]" in listing
