"""The Django app: wires pxtserve's receivers and registers its system checks when Django starts."""

from django.apps import AppConfig


class PxtserveConfig(AppConfig):
    name = "pxtserve"
    verbose_name = "Pixeltable serving"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from pxtserve import conf
        from pxtserve.workers import connect_worker_signals

        # a bad settings.PXTSERVE stops the site here, naming the key, rather than at the first request: the
        # ASGI app and the job workers run no system checks, and `manage.py check` would die the same way in
        # the URL check (pxtserve.urls reads the settings); check_settings covers settings replaced later
        conf.settings()
        # override_settings(PXTSERVE=...) takes effect at once
        setting_changed.connect(conf.reload, dispatch_uid="pxtserve.conf.reload")
        # job workers (django-q2) prepare themselves for Pixeltable and recover jobs as they start
        connect_worker_signals()
        # importing them registers pxtserve's system checks (`manage.py check`, `check --deploy`, serve)
        from pxtserve import checks, deploy_checks  # noqa: F401
