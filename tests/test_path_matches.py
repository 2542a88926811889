"""pxtserve.path_matches: API paths resolved from the matches kept for literal paths, over real URLconfs (a
third-party site mounting a PixeltableRouter under a prefix, next to another API and a plain view)."""

import types

import pytest
from django.test import RequestFactory, override_settings
from django.urls import Resolver404, path, resolve
from ninja import NinjaAPI

from pxtserve import path_matches
from pxtserve.path_matches import resolve_path

thirdparty = override_settings(ROOT_URLCONF="tests.thirdparty.urls")


def request(path_info: str, urlconf: object = None) -> object:
    made = RequestFactory().get(path_info)
    if urlconf is not None:
        made.urlconf = urlconf
    return made


def kept() -> dict[str, object]:
    return path_matches._kept[1]


def same_as_django(path_info: str) -> object:
    """resolve_path's match for `path_info`, checked against Django's own resolution of it."""
    ours, django = resolve_path(request(path_info)), resolve(path_info)
    assert (ours.func, ours.args, ours.kwargs, ours.route, ours.view_name) == (
        django.func,
        django.args,
        django.kwargs,
        django.route,
        django.view_name,
    )
    return ours


@thirdparty
def test_a_mounted_routers_literal_path_is_kept_under_its_prefix(pxt_tables):
    first = same_as_django("/api/pxt/items/one")
    assert kept()["/api/pxt/items/one"] is first
    # the next request of that path is answered from the kept match, and it is Django's
    assert same_as_django("/api/pxt/items/one") is first
    # another API of the site and a plain view: literal too
    assert same_as_django("/other/ping").route == "other/ping"
    assert same_as_django("/").route == ""


@thirdparty
def test_a_kept_path_is_no_prefix_of_others(pxt_tables):
    same_as_django("/api/pxt/items")
    # the kept "/api/pxt/items" answers neither longer nor shorter paths: Django resolves those, to their own routes
    assert same_as_django("/api/pxt/items/update").route == "api/pxt/items/update"
    for unknown in ("/api/pxt/items/", "/api/pxt/item", "/api/pxt/itemsx", "/api/pxt/items/one/2"):
        with pytest.raises(Resolver404):
            resolve_path(request(unknown))
        assert unknown not in kept()


@thirdparty
def test_paths_with_a_variable_part_are_not_kept(pxt_tables):
    # the router's job poll takes the job id from the path: each id resolved by Django, with its own kwargs
    for job_id in ("a" * 32, "b" * 32):
        match = same_as_django(f"/api/pxt/jobs/{job_id}")
        assert match.kwargs == {"job_id": job_id}
    assert not any(key.startswith("/api/pxt/jobs/") for key in kept())


def test_a_request_urlconf_and_a_changed_root_urlconf_are_not_served_from_kept_matches(pxt_tables):
    def view(request: object) -> None:
        return None

    own = types.ModuleType("path_matches_own_urls")
    own.urlpatterns = [path("api/pxt/items/one", view, name="own")]
    with thirdparty:
        served = resolve_path(request("/api/pxt/items/one"))
        # a middleware's request.urlconf: resolved in that URLconf, the kept matches neither used nor changed
        assert resolve_path(request("/api/pxt/items/one", urlconf=own)).func is view
        assert kept()["/api/pxt/items/one"] is served
    api = NinjaAPI(urls_namespace="path-matches-test")
    other = types.ModuleType("path_matches_other_urls")
    other.urlpatterns = [path("v2/", api.urls), path("api/pxt/items/one", view)]
    with override_settings(ROOT_URLCONF=other):
        # another root URLconf (override_settings): its own matches, none of the previous one's
        assert resolve_path(request("/api/pxt/items/one")).func is view
        assert list(kept()) == ["/api/pxt/items/one"]
