"""`slm deploy`: Docker, Compose, Kubernetes, vLLM and nginx files rendered from what slmkit knows about a model."""

from slmkit.deploy.render import RENDERERS, render
from slmkit.deploy.spec import ENGINES, TARGETS, DeployOptions, Plan, plan
from slmkit.deploy.write import write_tree

__all__ = ["ENGINES", "RENDERERS", "TARGETS", "DeployOptions", "Plan", "plan", "render", "write_tree"]
