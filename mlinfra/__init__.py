"""mlinfra: MLOps infrastructure as code, with Pulumi programs per environment.

`mlinfra.open_project(dir)` is the Python API the CLI and the TUI share (docs/python-api.md).
"""

from .api import open_project
from .errors import MlinfraError

__version__ = "0.1.0"
__all__ = ["MlinfraError", "__version__", "open_project"]
