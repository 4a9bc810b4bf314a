"""`slm deploy TARGET --model NAME`: render deployment files; `slm deploy check DIR`: validate them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from rich.markup import escape

from slmkit.catalog.estimate import human, parse_size
from slmkit.cli.common import Aliased, console, fail, handle_errors
from slmkit.deploy import ENGINES, TARGETS, DeployOptions, plan, render, write_tree
from slmkit.errors import InvalidRequest


class DeployGroup(click.Group):
    """`slm deploy check DIR` is a subcommand; any other first word is a target."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                              list[str]]:
        if args and args[0] == "check":
            return super().resolve_command(ctx, args)
        name = args[0] if args and args[0] in TARGETS else "render"  # usage reads `slm deploy k8s ...`
        return name, self.commands["render"], args


class RenderCommand(click.Command):
    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if ctx.info_name in TARGETS:
            formatter.write_usage(ctx.command_path, "--model NAME [OPTIONS]")
        else:
            formatter.write_usage(ctx.command_path, "TARGET --model NAME [OPTIONS]")


@click.group(cls=DeployGroup, invoke_without_command=False)
def deploy() -> None:
    """Render deployment files: `slm deploy TARGET --model NAME [--out DIR] [--engine llamacpp|vllm] ...`.

    TARGET is docker, compose, k8s, nginx or ray; `slm deploy k8s --help` lists every option.
    `slm deploy check DIR` validates rendered (or edited) files.
    """


@deploy.command("render", cls=RenderCommand, hidden=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target")
@click.option("--model", "-m", required=True, help="Catalog or embedded model name.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [./deploy-TARGET, e.g. ./deploy-k8s].")
@click.option("--engine", metavar="[" + "|".join(ENGINES) + "]", default="llamacpp", show_default=True,
              help="llamacpp (CPU, slmkit) or vllm (GPU).")
@click.option("--replicas", type=int, default=1, show_default=True,
              help="Replicas (k8s minimum, nginx upstreams, ray fixed count).")
@click.option("--max-replicas", type=int, default=None, help="HPA / Serve autoscaling maximum [4 x replicas].")
@click.option("--min-replicas", type=int, default=None, help="ray: autoscale from this many (0: scale to zero).")
@click.option("--target-ongoing-requests", type=float, default=None,
              help="ray: ongoing requests per replica Serve autoscales to [slots].")
@click.option("--quant", default=None, help="Quantization [q4_k_m].")
@click.option("--ctx-size", "--ctx", "ctx", cls=Aliased, type=int, default=2048, show_default=True,
              help="Context per slot.")
@click.option("--parallel", "--slots", "slots", cls=Aliased, type=int, default=4, show_default=True,
              help="Slots per replica (vLLM: --max-num-seqs).")
@click.option("--cache-type-k", type=click.Choice(["f16", "q8_0", "q4_0"]), default="f16", show_default=True,
              help="KV cache type of keys (llama.cpp engine); sizes the memory request.")
@click.option("--cache-type-v", type=click.Choice(["f16", "q8_0", "q4_0"]), default="f16", show_default=True,
              help="KV cache type of values.")
@click.option("--memory", "memory", default=None, help="Memory budget per replica (GPU memory for vLLM), e.g. 4G.")
@click.option("--api-keys-secret", default=None, help="Secret holding the API key (key 'api-key').")
@click.option("--namespace", default="slmkit", show_default=True, help="Kubernetes namespace.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port the server listens on.")
@click.option("--drain-timeout", type=click.IntRange(min=0), default=30, show_default=True,
              help="Seconds running requests get after SIGTERM.")
@click.option("--image", default=None, help="Container image to run.")
@click.option("--upstream", "upstreams", multiple=True, help="nginx: a replica HOST:PORT (repeatable).")
@click.option("--listen", default="8000", show_default=True, help="nginx: the address to listen on.")
@click.option("--with-webui", is_flag=True, help="compose: add Open WebUI on slmkit's Ollama API.")
@click.option("--bake", is_flag=True, help="Bake the model into the image instead of pulling at start.")
@click.option("--force", is_flag=True, help="Overwrite an existing output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and files as JSON.")
@handle_errors
def render_cmd(target: str, model: str, out: Path | None, engine: str, replicas: int, max_replicas: int | None,
               min_replicas: int | None, target_ongoing_requests: float | None, quant: str | None, ctx: int,
               slots: int, cache_type_k: str, cache_type_v: str, memory: str | None, api_keys_secret: str | None,
               namespace: str, port: int, drain_timeout: int, image: str | None, upstreams: tuple[str, ...],
               listen: str, with_webui: bool, bake: bool, force: bool, as_json: bool) -> None:
    if target not in TARGETS:
        raise InvalidRequest(f"unknown target '{target}'; choose one of {', '.join(TARGETS)} (or `check DIR`)")
    if engine not in ENGINES:
        raise InvalidRequest(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    _check_replica_flags(target, replicas, min_replicas, max_replicas, target_ongoing_requests)
    options = DeployOptions(model=model, engine=engine, replicas=replicas, quant=quant, ctx=ctx, slots=slots,
                            api_keys_secret=api_keys_secret, with_webui=with_webui, bake=bake, namespace=namespace,
                            port=port, drain_timeout=drain_timeout, image=image, max_replicas=max_replicas,
                            memory_budget=parse_size(memory) if memory else None, min_replicas=min_replicas,
                            target_ongoing_requests=target_ongoing_requests, cache_type_k=cache_type_k,
                            cache_type_v=cache_type_v)
    the_plan = plan(options)
    extra = {"upstreams": list(upstreams) or None, "listen": listen} if target == "nginx" else {}
    files = render(target, the_plan, **extra)
    root = (out or Path(f"deploy-{target}")).expanduser().resolve()
    paths = write_tree(files, root, force=force)
    if as_json:
        print(json.dumps({"target": target, "options": asdict(options), "memory_request": the_plan.memory_request,
                          "memory_limit": the_plan.memory_limit, "gpus": the_plan.gpus,
                          "files": [str(p) for p in paths]}, indent=2))
        return
    sizing = (f"{the_plan.gpus} GPU(s), {human(the_plan.memory_estimate)} GPU memory" if the_plan.vllm
              else f"memory request {human(the_plan.memory_request)}, limit {human(the_plan.memory_limit)}")
    console.print(f"wrote {len(paths)} files for {target} ({engine}, {the_plan.served_name}; {sizing}) "
                  f"under {root}")
    console.print(f"check them after editing: slm deploy check {root}")


def _check_replica_flags(target: str, replicas: int, min_replicas: int | None, max_replicas: int | None,
                         target_ongoing: float | None) -> None:
    explicit = click.get_current_context().get_parameter_source("replicas") != click.core.ParameterSource.DEFAULT
    if target != "ray" and (min_replicas is not None or target_ongoing is not None):
        raise InvalidRequest("--min-replicas and --target-ongoing-requests are for the ray target")
    if target == "ray" and explicit and (min_replicas is not None or max_replicas is not None):
        raise InvalidRequest("ray: give either --replicas N or --min-replicas/--max-replicas, not both")
    if target != "ray" and max_replicas is not None and max_replicas < replicas:
        raise InvalidRequest("--max-replicas must be at least --replicas")


@deploy.command("check")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def check_cmd(directory: Path, as_json: bool) -> None:
    """Validate rendered files: Kubernetes schemas (1.29, 1.31), kustomize, Compose schema, promtool, nginx -t,
    Ray Serve config and KubeRay RayService."""
    from slmkit.deploy.check import check_dir

    results = check_dir(directory)
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            style = {"ok": "green", "failed": "red", "skipped": "yellow"}[r.status]
            detail = f" ({escape(r.detail)})" if r.detail else ""
            console.print(f"[{style}]{r.status:7}[/] {r.check}: {escape(str(r.path))}{detail}", highlight=False)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        fail(f"{len(failed)} of {len(results)} checks failed")
    if not results:
        fail(f"nothing to check in {directory}")
