"""model-compose workflows: load its YAML files unchanged, run them (jobs,
components, bindings, streamed outputs), and serve each as ``workflow/<id>``."""

from .loader import WorkflowLoadError, compose_files, load_compose
from .provider import WorkflowProvider
from .service import Task, Workflows
from .streams import LiveStream

__all__ = ["LiveStream", "Task", "WorkflowLoadError", "WorkflowProvider", "Workflows", "compose_files",
           "load_compose"]
