"""The standalone pxtserve site: settings, URLconf and ASGI application of `pxtserve serve` / `manage.py serve`.

In the package (not only in the checkout's project/) so that a pip-installed pxtserve serves on its own;
a Django site of your own does not use it (add "pxtserve" to its INSTALLED_APPS instead).
"""
