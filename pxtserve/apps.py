from django.apps import AppConfig


class PxtserveConfig(AppConfig):
    name = "pxtserve"
    verbose_name = "Pixeltable serving"
    default_auto_field = "django.db.models.BigAutoField"
