"""Branch envs (preview environments): an env of mlinfra.toml derived for one branch, with its
own stack state, serving port, registry and folder, a record of who made it from which commit,
and a TTL after which `gc` destroys it.

    project = mlinfra.config.load_project(".")
    env = project.environment("dev", branch="feature/login")   # the one entry point
    env.name            # "dev--feature-login-df7c7aeb": its stack, its folder, its aliases
    branch_envs(project), collect_garbage(project, dry_run=True), summarise(api_env)

Names are DNS-1123 labels (`_names`), ports are held in the state (`_environments`), the clock
is `now()` (`MLINFRA_NOW` stands in for it), and an env's engine keeps its record
(`BranchEngine`). See docs/preview-envs.md.
"""

from ._clock import NOW_ENV, now
from ._engine import BranchEngine
from ._environments import branch_environment, claim, creator, forget, recorded
from ._gc import BranchEnvStatus, Collected, branch_env_names, branch_envs, collect_garbage
from ._names import DNS_LABEL, MAX_NAME, branch_env_name, branch_slug, normalise_branch
from ._summary import STEP_SUMMARY_ENV, Summary, summarise

__all__ = [
    "DNS_LABEL",
    "MAX_NAME",
    "NOW_ENV",
    "STEP_SUMMARY_ENV",
    "BranchEngine",
    "BranchEnvStatus",
    "Collected",
    "Summary",
    "branch_env_name",
    "branch_env_names",
    "branch_environment",
    "branch_envs",
    "branch_slug",
    "claim",
    "collect_garbage",
    "creator",
    "forget",
    "normalise_branch",
    "now",
    "recorded",
    "summarise",
]
