"""KubeDriftMonitor: the drift monitor as a CronJob, one check per run (`--once`), reading the
prediction log the servers write to the env's data volume."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s

from ..components._monitoring import MonitoringArgs
from ._namespace import env_namespace
from ._pods import container, pod_spec, resources, service_account
from ._registries import data_claim
from ._target import APP_DIR, DATA_DIR, KubernetesTarget

__all__ = ["MONITORING_DIR", "KubeDriftMonitor", "cron_schedule"]

MONITORING_DIR = f"{DATA_DIR}/monitoring"
_SPEC_DIR = "/etc/mlinfra"
_COMPONENT = "monitoring"


def cron_schedule(interval_seconds: float) -> str:
    """The cron schedule nearest `monitoring.interval`: cron counts whole minutes, at least
    one, and hours past 59 minutes."""
    minutes = max(1, round(interval_seconds / 60))
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = minutes // 60
    return f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"


class KubeDriftMonitor(pulumi.ComponentResource):
    """A Secret holding the monitor's spec (the webhook URL is a secret) and a CronJob that
    runs `python -m mlinfra.monitoring --once` in the serving image every interval."""

    directory: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        target: KubernetesTarget,
        *,
        monitoring: MonitoringArgs,
        image: str,
        registry_path: pulumi.Input[str],
        url: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlinfra:kubernetes:KubeDriftMonitor", name, None, opts)
        namespace = env_namespace(target)
        child = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        spec = pulumi.Output.all(registry_path, url, monitoring.webhook).apply(
            lambda values: json.dumps(
                {
                    "env": target.env,
                    "registry": values[0],
                    "directory": MONITORING_DIR,
                    "url": values[1],
                    "project_dir": APP_DIR,
                    "code_paths": [APP_DIR],
                    "interval_seconds": monitoring.interval_seconds,
                    "window_seconds": monitoring.window_seconds,
                    "min_samples": monitoring.min_samples,
                    "significance": monitoring.significance,
                    "policy": monitoring.policy,
                    "webhook": values[2],
                    "cooldown_seconds": monitoring.cooldown_seconds,
                    "retrain_cooldown_seconds": monitoring.retrain_cooldown_seconds,
                },
                indent=2,
                sort_keys=True,
            )
        )
        secret = k8s.core.v1.Secret(
            f"{name}-spec",
            metadata=target.metadata(f"{name}-spec", _COMPONENT),
            string_data={"monitor.json": spec},
            opts=child,
        )
        account = service_account(target, name, _COMPONENT, child)
        check = container(
            "monitor",
            image,
            args=[
                "python",
                "-m",
                "mlinfra.monitoring",
                "--spec",
                f"{_SPEC_DIR}/monitor.json",
                "--once",
            ],
            resources=resources(target.settings.serving.resources),
            mounts=[
                {"name": "data", "mountPath": DATA_DIR},
                {"name": "spec", "mountPath": _SPEC_DIR, "readOnly": True},
            ],
        )
        volumes = [
            {"name": "data", "persistentVolumeClaim": {"claimName": data_claim(target)}},
            {"name": "spec", "secret": {"secretName": secret.metadata.name}},
        ]
        k8s.batch.v1.CronJob(
            name,
            metadata=target.metadata(name, _COMPONENT),
            spec={
                "schedule": cron_schedule(monitoring.interval_seconds),
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "metadata": {"labels": target.labels(_COMPONENT)},
                            "spec": pod_spec(
                                [check],
                                service_account=account.metadata.name,
                                volumes=volumes,
                                restartPolicy="Never",
                            ),
                        },
                    }
                },
            },
            opts=child,
        )
        self.directory = pulumi.Output.from_input(MONITORING_DIR)
        self.register_outputs({"directory": self.directory})
