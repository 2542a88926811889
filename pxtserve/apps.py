"""The Django app: wires pxtserve's receivers when Django starts."""

from django.apps import AppConfig


class PxtserveConfig(AppConfig):
    name = "pxtserve"
    verbose_name = "Pixeltable serving"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from pxtserve import conf
        from pxtserve.workers import connect_worker_signals

        # a bad settings.PXTSERVE stops the site here, naming the key, rather than at the first request
        conf.settings()
        # override_settings(PXTSERVE=...) takes effect at once
        setting_changed.connect(conf.reload, dispatch_uid="pxtserve.conf.reload")
        # job workers (django-q2) prepare themselves for Pixeltable and recover jobs as they start
        connect_worker_signals()
