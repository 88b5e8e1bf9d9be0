"""The Pulumi program of every environment of this project.

It reads the environment being deployed (`mlinfra up --env dev` picks `[env.dev]` of
mlinfra.toml), declares its training cluster, model registry and serving stack, and exports
their outputs (`mlinfra outputs --env dev`). The components hold the logic, so upgrading mlinfra
upgrades every project.

To extend it, declare more resources below, with any Pulumi provider or your own
`pulumi.dynamic.ResourceProvider`; pass a component's outputs (`registry.path`,
`serving.url`) as inputs to make them depend on it, and `pulumi.export` what you want to read
back. Settings of your own belong in mlinfra.toml; build args by hand (see
`mlinfra.components.ServingStackArgs`) instead of `from_environment` to override one.
"""

import pulumi

import mlinfra.config
from mlinfra.components import (
    ModelRegistry,
    ModelRegistryArgs,
    ServingStack,
    ServingStackArgs,
    TrainingCluster,
    TrainingClusterArgs,
)

env = mlinfra.config.current_environment()

training = TrainingCluster("training", TrainingClusterArgs.from_environment(env))
registry = ModelRegistry("registry", ModelRegistryArgs.from_environment(env))
serving = ServingStack(
    "serving", ServingStackArgs.from_environment(env, registry_path=registry.path)
)

pulumi.export("training_workspace", training.workspace)
pulumi.export("training_workers", training.workers)
pulumi.export("training_code_paths", training.code_paths)
if training.scheduler is not None:
    pulumi.export("training_scheduler", training.scheduler)
if training.dashboard is not None:
    pulumi.export("training_dashboard", training.dashboard)
pulumi.export("registry_path", registry.path)
pulumi.export("serving_url", serving.url)
if serving.token is not None:
    pulumi.export("serving_token", serving.token)
if serving.monitoring_dir is not None:
    pulumi.export("monitoring_dir", serving.monitoring_dir)
