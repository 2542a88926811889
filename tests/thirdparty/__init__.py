"""A minimal third-party Django site that uses pxtserve as an installed app (see tests/test_thirdparty_site.py)."""
