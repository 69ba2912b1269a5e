"""Every custom module's DOCUMENTATION, EXAMPLES and RETURN parse as YAML (what ansible-doc
needs; ansible-lint does not read them), and DOCUMENTATION names the module and its options."""
import ast
import glob
import os

import pytest
import yaml

LIBRARY = os.path.join(os.path.dirname(__file__), "..", "..", "library")
MODULES = sorted(glob.glob(os.path.join(LIBRARY, "*.py")))


def blocks(path):
    tree = ast.parse(open(path).read())
    return {n.targets[0].id: n.value.value for n in tree.body
            if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") in ("DOCUMENTATION", "EXAMPLES", "RETURN")}


@pytest.mark.parametrize("path", MODULES, ids=os.path.basename)
def test_documentation_blocks_parse(path):
    found = blocks(path)
    assert set(found) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    doc = yaml.safe_load(found["DOCUMENTATION"])
    assert doc["module"] == os.path.basename(path)[:-3] and doc["description"]
    assert yaml.safe_load(found["EXAMPLES"])
    for key, spec in (yaml.safe_load(found["RETURN"]) or {}).items():
        assert "description" in spec and "returned" in spec, key
