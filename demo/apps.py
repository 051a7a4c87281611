from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo, labelled as such: the `demo` and `seed_demo` management commands and the local
    mail servers they start. Never needed in production. It has no models, and importing it
    imports nothing of pymap: only `demo.mailservers` and the `demo` command do."""

    name = "demo"
    verbose_name = "Demo"
