"""What the read path reads instead of rebuilding, and that it still sees every change (issue 15)."""

import pixeltable as pxt
import pytest

from pxtserve.pxt_internals import stored_schema_version


def test_stored_schema_version_follows_changes_and_drops(pxt_tables):
    """The schema check's cheap read gives get_metadata's schema_version, after a change too; a dropped table is
    TABLE_NOT_FOUND, as get_metadata says."""
    t = pxt.create_table("pxtserve_test.versioned", {"id": pxt.Required[pxt.Int]}, if_exists="replace")
    assert stored_schema_version(t) == t.get_metadata()["schema_version"]
    before = stored_schema_version(t)
    t.add_column(extra=pxt.String | None)
    assert stored_schema_version(t) == t.get_metadata()["schema_version"] != before
    pxt.drop_table("pxtserve_test.versioned")
    with pytest.raises(pxt.Error) as raised:
        stored_schema_version(t)
    assert raised.value.error_code is pxt.ErrorCode.TABLE_NOT_FOUND
