"""mlinfra: MLOps infrastructure as code, with Pulumi programs per environment."""

from .errors import MlinfraError

__version__ = "0.1.0"
__all__ = ["MlinfraError", "__version__"]
