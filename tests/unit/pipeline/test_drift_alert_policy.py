"""Which drift events alert: the drift kinds join the default alerting kinds; a configured list
is taken as it is; alerts go to the configured channels and repeat at most once a day."""

from __future__ import annotations

from junction.pipeline.config import HubConfig
from junction.pipeline.drift_job import ALERT_QUIET_S, alert_policy
from junction.store.events import ALERTING_KINDS

CHANNELS = {"webhook.ops": {"url": "https://ops.example.com/hook", "secret": "x" * 32}}


def _cfg(**alerts) -> HubConfig:
    return HubConfig.model_validate({"channels": CHANNELS, "alerts": alerts})


def test_by_default_drift_and_retraining_alert_beside_the_other_kinds() -> None:
    policy = alert_policy(_cfg(to=["webhook.ops"]))
    assert policy.to == ("webhook.ops",)
    assert policy.alerts("model.drift")
    assert policy.alerts("model.retrain_requested")
    assert all(policy.alerts(kind) for kind in ALERTING_KINDS)
    assert policy.quiet_s == ALERT_QUIET_S == 86_400


def test_a_configured_kind_list_is_taken_as_it_is() -> None:
    only_drift = alert_policy(_cfg(to=["webhook.ops"], kinds=["model.drift"]))
    assert only_drift.alerts("model.drift")
    assert not only_drift.alerts("model.retrain_requested")
    assert not only_drift.alerts("endpoint.disabled")
    no_drift = alert_policy(_cfg(to=["webhook.ops"], kinds=["endpoint.disabled"]))
    assert not no_drift.alerts("model.drift")


def test_without_alert_channels_nothing_alerts() -> None:
    assert not alert_policy(_cfg()).alerts("model.drift")
