"""Training: a user's model declared in mlinfra.toml, searched, fitted and registered with lineage.

    from mlinfra.training import load_definition, train

    model = load_definition("iris", project.config.models["iris"], project.root)
    result = train(model, registry=registry, env="dev", workspace=workspace, workers=0,
                   params={"max_depth": 3}, search="random", trials=16)
    result.version          # the registered ModelVersion

Parameter and search-space mistakes raise ParameterError before any data is loaded; data that
fails its checks raises mlinfra.data.DataValidationError; in both cases nothing is registered.
"""

from ._definition import ModelDefinition, load_definition
from ._errors import ParameterError, TrainingError
from ._params import apply_params, check_search_space, parse_overrides
from ._search import DEFAULT_TRIALS, SearchResult, Strategy, Trial, plan_candidates
from ._train import SilentProgress, TrainingProgress, TrainResult, train

__all__ = [
    "DEFAULT_TRIALS",
    "ModelDefinition",
    "ParameterError",
    "SearchResult",
    "SilentProgress",
    "Strategy",
    "TrainResult",
    "TrainingError",
    "TrainingProgress",
    "Trial",
    "apply_params",
    "check_search_space",
    "load_definition",
    "parse_overrides",
    "plan_candidates",
    "train",
]
