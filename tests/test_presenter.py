"""Presenter mode without a browser: the registry's dashboards build and carry the control the browser test moves,
pages are generated from the registry (a new lesson is one Demo line), and a dashboard that fails shows a sentence."""
import json

import ipywidgets as widgets
import nbformat
import pytest

from lessonlib.dashboards import presenter, registry
from lessonlib.dashboards.registry import DEMOS, LESSONS, Demo, pages

from .conftest import ASSIGNMENTS


def _descendants(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _descendants(child)


def test_every_lesson_of_the_course_has_a_dashboard_and_pages_follow_course_order():
    assert set(ASSIGNMENTS) <= set(pages()), "every lesson needs at least one live demo"
    assert list(pages()) == [lesson for lesson in LESSONS if lesson in pages()]


@pytest.mark.parametrize("demo", DEMOS, ids=lambda d: f"{d.lesson}:{d.dashboard}")
def test_every_registered_dashboard_builds_and_has_the_control_the_browser_test_moves(demo):
    widget = demo.build()
    sliders = [w for w in _descendants(widget) if isinstance(w, (widgets.SelectionSlider, widgets.FloatSlider,
                                                                 widgets.IntSlider))]
    assert demo.control in [s.description for s in sliders], (demo.title, [s.description for s in sliders])
    assert demo.title and demo.context.endswith(".")


def test_a_new_lesson_is_one_line(monkeypatch):
    extra = Demo("05_serving", "Serving", "A new lesson's dashboard.", "decode_step:decode_step_dashboard",
                 control="batch")
    monkeypatch.setattr(registry, "DEMOS", DEMOS + [extra])
    assert list(pages())[-1] == "05_serving" and pages()["05_serving"] == [extra]
    assert registry.lesson_title("05_serving") == "05 serving"          # a title until LESSONS names it
    monkeypatch.setattr(registry, "LESSONS", {"05_serving": "Serving systems", **LESSONS})
    assert list(pages())[0] == "05_serving" and registry.lesson_title("05_serving") == "Serving systems"


def test_pages_are_notebooks_with_a_header_and_one_cell_per_dashboard(tmp_path):
    names = presenter.write_pages(tmp_path)
    assert names[0] == "index.ipynb" and set(names[1:]) == {f"{lesson}.ipynb" for lesson in pages()}
    index = nbformat.read(tmp_path / "index.ipynb", as_version=4)
    nbformat.validate(index)
    index_text = "".join(cell.source for cell in index.cells)
    for lesson, demos in pages().items():
        assert f"]({lesson}.ipynb)" in index_text
        page = nbformat.read(tmp_path / f"{lesson}.ipynb", as_version=4)
        nbformat.validate(page)
        code = [cell.source for cell in page.cells if cell.cell_type == "code"]
        assert code[0].endswith(f"header({lesson!r})")
        assert code[1:] == [f"show({lesson!r}, {i})" for i in range(len(demos))]
        assert all(not cell.get("outputs") for cell in page.cells if cell.cell_type == "code")
        assert page.metadata.kernelspec.name == "python3"


def test_show_marks_each_dashboard_and_turns_a_failure_into_a_sentence(monkeypatch):
    box = presenter.show("00_orientation", 0)
    assert {"lessonlib-demo", "lessonlib-demo-0"} <= set(box._dom_classes)
    broken = Demo("00_orientation", "Broken", "Fails.", "decode_step:no_such_dashboard", control="batch")
    monkeypatch.setattr(registry, "DEMOS", [broken])
    box = presenter.show("00_orientation", 0)
    message = box.children[0]
    assert "could not be built" in message.value and "no_such_dashboard" in message.value
    assert "lessonlib-demo-error" in message._dom_classes


def test_the_server_listens_on_this_machine_only_and_shuts_down_kernels_of_closed_pages(tmp_path):
    command = presenter.voila_command(tmp_path, 8866, preheat=True)
    assert "--Voila.ip=127.0.0.1" in command and "--port=8866" in command and "--no-browser" in command
    assert f"--MappingKernelManager.cull_idle_timeout={presenter.CULL_AFTER_S}" in command
    assert "--VoilaConfiguration.show_tracebacks=False" in command
    assert not any("preheat" in part for part in presenter.voila_command(tmp_path, 8866, preheat=False))


def test_presenter_style_is_large_and_high_contrast():
    css = presenter.PRESENTER_CSS
    assert "--jp-widgets-font-size: 20px" in css and "color: #000" in css
    json.dumps(presenter.index_page())   # serializable
