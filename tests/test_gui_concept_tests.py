"""The window's concept tests against the numpy backend: Analysis → Test a concept (TCAV)
asks for the shown layer (a direction layer's source), and the tested concept's CAV joins
the layer list as a one-unit layer the window then shows; Analysis → Audit a folder opens
the report page the job wrote, and again from the menu."""

from __future__ import annotations

import pytest
from fake_backend import DEFAULT_LAYER
from PyQt6.QtWidgets import QDialog, QFileDialog

from app.core.requests import AuditRequest, TcavRequest
from app.gui.features.tcav import ConceptTests, TcavForm

pytest.importorskip("pytestqt")


def test_a_tested_concept_becomes_a_unit_the_window_shows(ui, backend, monkeypatch, tmp_path):
    folders = {n: str(tmp_path / n) for n in ("Stripes", "random", "tabby")}

    seen: list[str] = []

    def fill(form: TcavForm) -> QDialog.DialogCode:
        seen.append(form.target.currentText())  # the frame's top class, offered first
        form.concept.edit.setText(folders["Stripes"])
        form.random.edit.setText(folders["random"])
        form.examples.edit.setText(folders["tabby"])
        form.target.setCurrentText("tabby, tabby cat")
        form.runs.setValue(12)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(TcavForm, "exec", fill)
    assert (ui.menu_path("tcav") or "").startswith("&Analysis")
    ui.trigger("tcav")
    assert backend.asked(TcavRequest) == [TcavRequest(
        folders["Stripes"], folders["random"], folders["tabby"], "tabby, tabby cat",
        (DEFAULT_LAYER,), 12)]
    assert seen == ["Egyptian cat"]
    cav = f"{DEFAULT_LAYER}@cav-stripes"
    ui.wait_until(lambda: ui.window.view_model.layer == cav)
    assert backend.views[-1].layer == cav
    ui.wait_until(lambda: (g := ui.grid_geometry()) is not None and g.channels == 1)
    assert any("significant" in n.text for n in ui.notices())
    # asked again while the CAV layer shows: the test runs at its source, not at it
    ui.trigger("tcav")
    assert backend.asked(TcavRequest)[-1].layers == (DEFAULT_LAYER,)
    # a form left half-filled asks nothing and says why
    monkeypatch.setattr(TcavForm, "exec", lambda form: QDialog.DialogCode.Accepted)
    ui.trigger("tcav")
    assert len(backend.asked(TcavRequest)) == 2
    assert "needs the concept, random and class folders" in ui.notices()[-1].text


def test_the_audit_opens_its_report_and_the_menu_opens_it_again(ui, backend, monkeypatch,
                                                                 tmp_path):
    opened: list[str] = []
    monkeypatch.setattr(ConceptTests, "open_report", lambda self, path: opened.append(path))
    ui.trigger("open_report")  # none yet: a reason, nothing opened
    assert opened == [] and "no audit report yet" in ui.notices()[-1].text
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    ui.trigger("audit")
    assert backend.asked(AuditRequest) == [AuditRequest(str(tmp_path), (), (DEFAULT_LAYER,))]
    page = str(tmp_path / "report" / "audit.html")
    ui.wait_until(lambda: opened == [page])
    ui.trigger("open_report")
    assert opened == [page, page]
