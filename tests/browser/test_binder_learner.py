"""A learner on Binder: JupyterLab as binder/postBuild leaves it (see ``binder_lab_server`` in conftest.py).

The learner keeps nbgrader's Validate button; the instructor's formgrader is off, on the server and in
the lab interface.
"""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from test_browser import EXERCISE, JS_NOTEBOOK_READY

pytestmark = pytest.mark.browser


def test_binder_learner_gets_validate_but_no_formgrader(page, binder_lab_server, screenshots):
    req = urllib.request.Request(f"{binder_lab_server.url}/formgrader",
                                 headers={"Authorization": f"token {binder_lab_server.token}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 404, f"/formgrader should not exist for Binder learners, got HTTP {info.value.code}"

    page.goto(binder_lab_server.lab_url(f"/lab/tree/{EXERCISE}?reset"))
    page.wait_for_function(JS_NOTEBOOK_READY, arg=EXERCISE, timeout=120_000, polling=500)
    page.locator(".validate-button").first.wait_for(state="visible")
    commands = page.evaluate("() => ['nbgrader:open-formgrader', 'nbgrader:open-create-assignment', "
                             "'nbgrader:open-course-list'].filter(c => window.jupyterapp.commands.hasCommand(c))")
    assert commands == [], f"instructor commands are available to Binder learners: {commands}"
    page.screenshot(path=str(screenshots / "binder_learner_exercise.png"))
