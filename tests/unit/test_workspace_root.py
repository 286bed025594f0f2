"""The repository root is a working workspace: the demo pipeline, a template override, an example."""

from __future__ import annotations

from pathlib import Path

from runbook.config import load_config
from runbook.config.schema import dump

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "runbook" / "demo" / "runbook.yaml"


def test_the_root_runbook_yaml_is_the_packaged_demo_reading_the_packages_sql() -> None:
    root, packaged = load_config(REPO / "runbook.yaml"), load_config(PACKAGED)
    assert root.name == packaged.name == "nba-demo"
    assert list(root.processors) == list(packaged.processors)
    for name, processor in root.processors.items():
        original = packaged.processors[name]
        if original.sql_file is not None:
            assert processor.sql_file == f"runbook/demo/{original.sql_file}"
            assert (REPO / processor.sql_file).is_file()
        assert dump(processor._replace(sql_file=None)) == dump(original._replace(sql_file=None))
    assert dump(root._replace(processors={})) == dump(packaged._replace(processors={}))


def test_the_root_templates_extend_the_packaged_report() -> None:
    override = (REPO / "templates" / "handoff.md.j2").read_text(encoding="utf-8")
    assert '{% extends "builtin/handoff.md.j2" %}' in override and "{{ super() }}" in override


def test_the_example_handoff_is_the_demos_rendered_with_the_override() -> None:
    example = (REPO / "handoffs" / "example.md").read_text(encoding="utf-8")
    assert example.startswith("# ✅ Handoff — nba-demo")
    assert "## 🔁 To rebuild this example" in example  # the root template's block
    assert "handoffs/example.md" in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_example_handoff_links_its_heat_map_beside_it() -> None:
    import xml.etree.ElementTree as ET

    example = (REPO / "handoffs" / "example.md").read_text(encoding="utf-8")
    assert "](<example-heatmap.svg>)" in example
    picture = ET.parse(REPO / "handoffs" / "example-heatmap.svg").getroot()
    names = {text.text for text in picture.iter("{http://www.w3.org/2000/svg}text")}
    assert set(load_config(REPO / "runbook.yaml").processors) <= names
