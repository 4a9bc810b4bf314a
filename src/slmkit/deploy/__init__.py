"""`slm deploy`: Docker, Compose, Kubernetes, vLLM, nginx and Ray Serve files, sized from what slmkit knows."""

from slmkit.deploy.render import RENDERERS, render
from slmkit.deploy.spec import ENGINES, TARGETS, DeployOptions, Plan, plan
from slmkit.deploy.write import write_tree

__all__ = ["ENGINES", "RENDERERS", "TARGETS", "DeployOptions", "Plan", "plan", "render", "write_tree"]
