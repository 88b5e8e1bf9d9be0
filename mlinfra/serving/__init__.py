"""The model server: Open Inference Protocol v2 and MLflow scoring over an env's deployment table.

Run it with `python -m mlinfra.serving --registry PATH --env ENV`. Importing this package is cheap
(no web stack, no scikit-learn): rollouts and the CLI use the deployment table from here.
"""

from ._deployments import (
    Deployment,
    WorkerAck,
    deployment_dir,
    read_acks,
    read_deployment,
    write_deployment,
)

__all__ = [
    "Deployment",
    "WorkerAck",
    "deployment_dir",
    "read_acks",
    "read_deployment",
    "write_deployment",
]
