"""Service files: both TOML layouts, defaults, and bad files stopped with one message naming where."""

import pytest

from pxtserve.config import ServiceConfigError, load_service
from pxtserve.service import build_service

from .conftest import service_from_toml


def test_standalone_and_pyproject_layouts_parse_alike(tmp_path):
    standalone = tmp_path / "service.toml"
    standalone.write_text('[[service]]\nname = "a"\n[[service.routes]]\ntype = "delete"\ntable = "d.t"\npath = "/d"\n')
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\n[[tool.pixeltable.service]]\nname = "a"\n'
        '[[tool.pixeltable.service.routes]]\ntype = "delete"\ntable = "d.t"\npath = "/d"\n'
    )
    a, b = load_service(standalone, "a"), load_service(pyproject, "a")
    assert a.model_dump() == b.model_dump()
    assert (a.title, a.host, a.port, a.prefix) == ("Pixeltable", "0.0.0.0", 8000, "")


def error_of(text: str, name: str = "svc") -> str:
    with pytest.raises(ServiceConfigError) as info:
        build_service(service_from_toml(text, name))
    return str(info.value)


HEAD = '[[service]]\nname = "svc"\n'


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            'type = "insert"\ntable = "pxtserve_test.items"\npath = "/i"\ncolour = "red"',
            "route #1 (/i): field 'colour': unknown field",
        ),
        (
            'type = "upsert"\ntable = "pxtserve_test.items"\npath = "/i"',
            "route #1 (/i): field 'type': unknown route type 'upsert'",
        ),
        (
            'type = "insert"\ntable = "pxtserve_test.items"\npath = "i"',
            "route #1 (i): field 'path': Value error, path must start with '/'",
        ),
        (
            'type = "insert"\ntable = "pxtserve_test.nothere"\npath = "/i"',
            "route #1 (/i): field 'table': table 'pxtserve_test.nothere' cannot be opened",
        ),
        (
            'type = "insert"\ntable = "pxtserve_test.items"\npath = "/i"\ninputs = ["id", "name", "colour"]',
            "route #1 (/i): field 'inputs': unknown input column 'colour'",
        ),
        (
            'type = "insert"\ntable = "pxtserve_test.items"\npath = "/i"\noutputs = ["nope"]',
            "route #1 (/i): field 'outputs': unknown output column 'nope'",
        ),
        (
            'type = "insert"\ntable = "pxtserve_test.items"\npath = "/i"\ninputs = ["id", "name_upper"]',
            "field 'inputs': 'name_upper' is a computed column",
        ),
        (
            'type = "insert"\ntable = "pxtserve_test.items"\npath = "/i"\ninputs = ["id"]',
            "field 'inputs': inputs must include the required column(s) name",
        ),
        (
            'type = "update"\ntable = "pxtserve_test.nopk"\npath = "/u"',
            "route #1 (/u): field 'table': table 'pxtserve_test.nopk' has no primary key",
        ),
        (
            'type = "update"\ntable = "pxtserve_test.items"\npath = "/u"\ninputs = ["id"]',
            "field 'inputs': 'id' is a primary key column",
        ),
        (
            'type = "update"\ntable = "pxtserve_test.images"\npath = "/u"\ninputs = ["image"]',
            "field 'inputs': 'image' is a media column and cannot be updated",
        ),
        (
            'type = "delete"\ntable = "pxtserve_test.nopk"\npath = "/d"',
            "field 'match_columns': table 'pxtserve_test.nopk' has no primary key",
        ),
        (
            'type = "delete"\ntable = "pxtserve_test.items"\npath = "/d"\nmatch_columns = ["zzz"]',
            "field 'match_columns': unknown match column 'zzz'",
        ),
        (
            'type = "query"\npath = "/q"\nquery = "tests.pxt_app.missing_module.f"',
            "field 'query': cannot import module 'tests.pxt_app.missing_module'",
        ),
        (
            'type = "query"\npath = "/q"\nquery = "tests.pxt_app.queries.nope"',
            "field 'query': module 'tests.pxt_app.queries' has no attribute 'nope'",
        ),
        (
            'type = "query"\npath = "/q"\nquery = "tests.pxt_app.queries.NOT_A_QUERY"',
            "field 'query': query 'tests.pxt_app.queries.NOT_A_QUERY' is an int, not a @pxt.query or retrieval_udf function",
        ),
        (
            'type = "query"\npath = "/q"\nquery = "tests.pxt_app.queries.item_by_id"\ninputs = []',
            "field 'inputs': inputs must include the query parameter(s) without a default: id",
        ),
        (
            'type = "query"\npath = "/q"\nquery = "tests.pxt_app.queries.image_thumb"\nmethod = "get"\nuploadfile_inputs = ["id"]',
            "field 'uploadfile_inputs'",
        ),
        ('type = "query"\npath = "/q"\nquery = "tests.pxt_app.queries.item_by_id"\nmethod = "put"', "field 'method'"),
        (
            'type = "insert"\ntable = "pxtserve_test.items"\npath = "/i"\nuploadfile_inputs = ["name"]',
            "field 'uploadfile_inputs': uploadfile input column 'name' is not media-typed",
        ),
        (
            'type = "insert"\ntable = "pxtserve_test.items"\npath = "/i"\nreturn_fileresponse = true',
            "field 'return_fileresponse': return_fileresponse requires exactly one output",
        ),
        (
            'type = "insert"\ntable = "pxtserve_test.images"\npath = "/i"\noutputs = ["thumb"]\nreturn_fileresponse = true\nbackground = true',
            "return_fileresponse and background are mutually exclusive",
        ),
        (
            'type = "insert"\ntable = "pxtserve_test.items"\npath = "/media/x"',
            "field 'path': path '/media/x' is reserved",
        ),
    ],
)
def test_bad_route_is_one_message_naming_file_service_route_and_field(pxt_tables, route, expected):
    message = error_of(HEAD + "[[service.routes]]\n" + route + "\n")
    assert ".toml: service 'svc': " in message
    assert expected in message


def test_duplicate_method_and_path_is_an_error(pxt_tables):
    route = '[[service.routes]]\ntype = "delete"\ntable = "pxtserve_test.items"\npath = "/d"\n'
    message = error_of(HEAD + route + route)
    assert "route #2 (/d): field 'path': another route already serves POST /d" in message


def test_same_path_different_methods_is_fine(pxt_tables):
    text = (
        HEAD + '[[service.routes]]\ntype = "query"\npath = "/q"\nquery = "tests.pxt_app.queries.item_by_id"\n'
        'method = "get"\n[[service.routes]]\ntype = "query"\npath = "/q"\nquery = "tests.pxt_app.queries.item_by_id"\n'
    )
    assert len(build_service(service_from_toml(text, "svc")).router.operations) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[service]]\nname = "svc"\nport = "eighty"', "field 'port'"),
        (
            '[[service]]\nname = "svc"\nprefix = "api"',
            "field 'prefix': Value error, prefix must be empty or start with '/'",
        ),
        (
            '[[service]]\nname = "svc"\nmodules = ["tests.pxt_app.nope"]',
            "field 'modules': cannot import module 'tests.pxt_app.nope'",
        ),
        ('[[service]]\nname = "svc"\nflavour = 1', "field 'flavour': unknown field"),
    ],
)
def test_bad_service_fields(pxt_tables, text, expected):
    assert expected in error_of(text)


def test_missing_service_and_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[service]]\nname = "a"\n')
    with pytest.raises(ServiceConfigError, match="no service named 'b'"):
        load_service(path, "b")
    with pytest.raises(ServiceConfigError, match="no such file"):
        load_service(tmp_path / "missing.toml", "a")
    path.write_text("[[service]\n")
    with pytest.raises(ServiceConfigError, match="not valid TOML"):
        load_service(path, "a")
