"""The index's setup check says "ready" only when the course can run, and names what is not."""

from __future__ import annotations

import pytest

from simulations.kit import setup_check


def test_this_machine_is_ready(capsys: pytest.CaptureFixture[str]) -> None:
    assert setup_check.check_setup() is True
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "ready"
    for name, _ in setup_check.REQUIRED_MODULES:
        assert f"ok  {name}" in out


def test_the_sliders_front_end_and_the_png_encoder_are_required() -> None:
    required = {name for name, _ in setup_check.REQUIRED_MODULES}
    assert {"ipywidgets", "jupyterlab_widgets", "PIL"} <= required


def test_a_missing_package_is_named_with_the_install_command(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(setup_check, "REQUIRED_MODULES",
                        (*setup_check.REQUIRED_MODULES, ("no_such_package_xyz", "testing")))
    assert setup_check.check_setup() is False
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "no_such_package_xyz" in x)
    assert line.startswith("!!")
    assert "ModuleNotFoundError" in line
    assert setup_check.INSTALL in line
    assert out.splitlines()[-1].startswith("not ready")


def test_an_old_python_is_not_ready(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(setup_check, "REQUIRED_PYTHON", (9, 0))
    assert setup_check.check_setup() is False
    assert "needs 9.0 or newer" in capsys.readouterr().out


def test_without_redis_the_course_is_still_ready(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(setup_check.shutil, "which", lambda name: None)
    assert setup_check.check_setup() is True
    out = capsys.readouterr().out
    assert "--  redis-server" in out
    assert "skip" in out
    assert out.splitlines()[-1] == "ready"
