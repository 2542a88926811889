from django.apps import AppConfig


class PxtserveConfig(AppConfig):
    name = "pxtserve"
    verbose_name = "Pixeltable serving"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from pxtserve.workers import connect_worker_signals

        # job workers (django-q2) prepare themselves for Pixeltable and recover jobs as they start
        connect_worker_signals()
