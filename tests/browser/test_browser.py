"""End to end in a real browser: a lecture with its LoRA widget, an exercise, nbgrader's formgrader.

Run with ``pytest -m browser -n 0 tests/browser`` (the fixtures and the skip rules are in
``conftest.py`` beside this file). Screenshots land in ``build/screenshots/``.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

LECTURE = "lectures/04_lora.ipynb"
EXERCISE = "exercises/00_warmup/00_warmup.ipynb"
SOLUTION = "solutions/00_warmup/00_warmup.ipynb"

# JavaScript run in the page. JupyterLab is started with expose_app_in_browser, so
# window.jupyterapp is the application: the same commands the menus call.
JS_NOTEBOOK_READY = """(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return false;
  const w = app.shell.currentWidget;
  if (!w || !w.context || w.context.path !== path || !w.sessionContext) return false;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && w.context.isReady;
}"""

JS_RUN_ALL = """async () => {
  await window.jupyterapp.commands.execute('notebook:run-all-cells');
  return true;
}"""

# State of the current notebook: per code cell its execution count, whether it is queued or running,
# its error outputs and its text; and the kernel status.
JS_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = [];
  const model = w.content.model;
  for (let i = 0; i < model.cells.length; i++) {
    const c = model.cells.get(i);
    if (c.type !== 'code') continue;
    const outputs = c.outputs.toJSON();
    cells.push({index: i, count: c.executionCount, state: c.executionState,
                errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
                text: outputs.map(o => o.text || (o.data && o.data['text/plain']) || '').join('')});
  }
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return {kernel: k ? k.status : 'none', cells: cells};
}"""

JS_RESTART_KERNEL = """async () => {
  const w = window.jupyterapp.shell.currentWidget;
  await w.sessionContext.session.kernel.restart();
  return true;
}"""

# What a learner does when typing an answer: replace the source of the cell with this nbgrader grade_id.
JS_SET_SOURCE = """([gradeId, source]) => {
  const model = window.jupyterapp.shell.currentWidget.content.model;
  for (let i = 0; i < model.cells.length; i++) {
    const c = model.cells.get(i);
    const nbg = c.getMetadata('nbgrader');
    if (nbg && nbg.grade_id === gradeId) { c.sharedModel.setSource(source); return true; }
  }
  return false;
}"""


def open_notebook(page, lab_server, path: str, timeout_s: float = 120):
    page.goto(lab_server.lab_url(f"/lab/tree/{path}?reset"))  # ?reset: a fresh layout, no tabs restored
    page.wait_for_function(JS_NOTEBOOK_READY, arg=path, timeout=timeout_s * 1000, polling=500)


def run_all_and_wait(page, timeout_s: float, stop_on_error: bool = True) -> dict:
    """Run > Run All Cells, then wait until no cell is queued or running and the kernel is idle.

    JupyterLab stops the queue at the first error; then the cells after it stay unexecuted.
    """
    page.evaluate(JS_RUN_ALL)
    deadline = time.monotonic() + timeout_s
    idle_since = None
    while True:
        state = page.evaluate(JS_STATE)
        busy = state["kernel"] != "idle" or any(c["state"] == "running" for c in state["cells"])
        errored = any(c["errors"] for c in state["cells"])
        if not busy:
            idle_since = idle_since or time.monotonic()
            # idle for a moment with nothing queued: done (a queue between two cells is not idle)
            if time.monotonic() - idle_since > 2 or (errored and stop_on_error):
                return state
        else:
            idle_since = None
        if time.monotonic() > deadline:
            pending = [c["index"] for c in state["cells"] if c["count"] is None]
            pytest.fail(f"the notebook did not finish within {timeout_s:.0f} s; kernel {state['kernel']}, "
                        f"cells not executed: {pending}")
        time.sleep(1)


def error_summary(state: dict) -> str:
    return "; ".join(f"cell {c['index']}: {e}" for c in state["cells"] for e in c["errors"])


def assert_no_error_shown(page):
    """Nothing in the DOM looks like an error or a widget that failed to render."""
    tracebacks = page.locator(".jp-OutputArea-output").filter(has_text=re.compile(r"Traceback|Error:"))
    assert tracebacks.count() == 0, f"an output shows an error: {tracebacks.first.inner_text()[:500]}"
    texts = page.locator(".jp-OutputArea-output").all_inner_texts()
    raw = [t for t in texts if re.search(r"^(VBox|HBox|IntSlider|FloatLogSlider|Output)\(", t.strip())
           or "Error displaying widget" in t or "Loading widget..." in t]
    assert not raw, f"a widget shows as text instead of rendering: {raw[0][:300]}"


def explorer_text(page) -> str:
    return page.locator(".widget-output").filter(has_text="trainable parameters:").first.inner_text()


def explorer_image(page) -> str:
    img = page.locator(".widget-output img").first
    img.wait_for(state="visible")
    return img.get_attribute("src")


def parse_count(text: str) -> tuple[int, int]:
    m = re.search(r"r = (\d+), alpha = [\d.]+:\s*\n\s*trainable parameters: ([\d,]+)", text)
    assert m, f"the explorer's text has no 'r = .., alpha = ..: trainable parameters: N': {text[:300]}"
    return int(m.group(1)), int(m.group(2).replace(",", ""))


def parse_scale(text: str) -> float:
    m = re.search(r"effective scale alpha/r = ([\d.e+-]+)", text)
    assert m, f"the explorer's text has no 'effective scale alpha/r': {text[:300]}"
    return float(m.group(1))


def readouts(r_slider, a_slider) -> tuple[int, float]:
    return (int(r_slider.locator(".widget-readout").inner_text().strip()),
            float(a_slider.locator(".widget-readout").inner_text().strip()))


def wait_for_redraw(page, r_slider, a_slider, before_text: str, before_img: str, timeout_s: float = 90):
    """Wait until the explorer shows new text and a new figure for the values the sliders now read,
    and the kernel is idle (no redraw still queued)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text, img = explorer_text(page), explorer_image(page)
        m = re.search(r"r = (\d+), alpha = ([\d.]+):", text)
        if m and text != before_text and img != before_img and page.evaluate(JS_STATE)["kernel"] == "idle":
            r, alpha = readouts(r_slider, a_slider)
            if int(m.group(1)) == r and float(m.group(2)) == pytest.approx(alpha, rel=5e-3):
                return text, img
        time.sleep(0.5)
    pytest.fail(f"the explorer did not redraw for r, alpha = {readouts(r_slider, a_slider)} within {timeout_s:.0f} s "
                f"after moving a slider; it shows:\n{explorer_text(page)}")


def test_lecture_04_runs_and_the_lora_widget_responds(page, lab_server, screenshots):
    started = time.monotonic()
    open_notebook(page, lab_server, LECTURE)
    state = run_all_and_wait(page, timeout_s=900)
    assert not error_summary(state), f"{LECTURE}: cells raised in the browser: {error_summary(state)}"
    not_run = [c["index"] for c in state["cells"] if c["count"] is None]
    assert not not_run, f"{LECTURE}: code cells never executed: {not_run}"
    print(f"lecture 04 ran in the browser in {time.monotonic() - started:.0f} s")
    assert_no_error_shown(page)

    # The explorer: two sliders and a menu above an output with the figure and the numbers.
    r_slider = page.locator(".widget-slider").filter(has=page.locator("label", has_text="rank r")).first
    a_slider = page.locator(".widget-slider").filter(has=page.locator("label", has_text="alpha")).first
    r_slider.scroll_into_view_if_needed()
    r_slider.wait_for(state="visible")
    box = page.locator(".widget-vbox").filter(has=r_slider).last
    text0, img0 = explorer_text(page), explorer_image(page)
    r0, count0 = parse_count(text0)
    scale0 = parse_scale(text0)
    assert r0 == 8 and r_slider.locator(".widget-readout").inner_text().strip() == "8", \
        f"the rank slider should start at r = 8 as the lecture sets it: {text0[:200]}"
    box.screenshot(path=str(screenshots / "04_lora_explorer_r8.png"))

    # Drag the rank handle to the left end of its track: r = 1.
    handle = r_slider.locator(".noUi-handle").first
    track = r_slider.locator(".noUi-target, .slider").first.bounding_box()
    hb = handle.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] - 20, hb["y"] + hb["height"] / 2, steps=10)
    page.mouse.up()
    text1, img1 = wait_for_redraw(page, r_slider, a_slider, text0, img0)
    r1, count1 = parse_count(text1)
    assert r1 < r0 and count1 < count0, f"dragging the rank slider left should lower r and the count: {text1[:200]}"
    # r(d + k) per matrix: the count is proportional to r, whatever the shapes.
    assert count1 * r0 == count0 * r1, \
        f"trainable parameters should scale with r: {count0:,} at r = {r0} but {count1:,} at r = {r1}"
    assert parse_scale(text1) == pytest.approx(scale0 * r0 / r1, rel=1e-2), "alpha/r should follow r"
    box.screenshot(path=str(screenshots / f"04_lora_explorer_r{r1}.png"))

    # alpha: focus its handle and step it up with the keyboard (two steps of the log slider).
    alpha0 = readouts(r_slider, a_slider)[1]
    a_handle = a_slider.locator(".noUi-handle").first
    a_handle.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    text2, img2 = wait_for_redraw(page, r_slider, a_slider, text1, img1)
    assert readouts(r_slider, a_slider)[1] > alpha0, \
        f"two steps right should raise alpha above {alpha0}: {readouts(r_slider, a_slider)}"
    r2, count2 = parse_count(text2)
    assert (r2, count2) == (r1, count1), "changing alpha must not change r or the parameter count"
    assert parse_scale(text2) > parse_scale(text1), f"a larger alpha should raise alpha/r: {text2[:300]}"
    box.screenshot(path=str(screenshots / "04_lora_explorer_alpha_up.png"))
    page.screenshot(path=str(screenshots / "04_lora_page.png"))
    assert_no_error_shown(page)
    assert not page.page_errors, f"JavaScript errors in the page: {page.page_errors[:3]}"


def solution_answers(path: Path) -> dict[str, str]:
    """The answer cells of the source notebook, as a learner would type them (no solution markers)."""
    nb = nbformat.read(path, as_version=4)
    answers = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            lines = [ln for ln in cell.source.splitlines() if ln.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
            answers[meta["grade_id"]] = "\n".join(lines)
    return answers


def test_exercise_00_runs_and_shows_its_test_messages(page, lab_server, screenshots):
    open_notebook(page, lab_server, EXERCISE)
    # As released: the setup and reference cells run, the first answer cell raises NotImplementedError.
    state = run_all_and_wait(page, timeout_s=300)
    errors = [(c["index"], e) for c in state["cells"] for e in c["errors"]]
    assert errors and errors[0][1].startswith("NotImplementedError"), \
        f"the released exercise should stop at the first unanswered part with NotImplementedError: {errors}"
    assert any("batch:" in c["text"] for c in state["cells"]), "the locked references cell printed nothing"
    page.locator(".jp-OutputArea-output").filter(has_text="NotImplementedError").first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "00_warmup_released.png"))

    # A learner answers every part (the solution's code typed into the answer cells) and runs all again.
    answers = solution_answers(lab_server.root / SOLUTION)
    assert len(answers) >= 3, f"{SOLUTION} should have at least 3 answer cells, found {list(answers)}"
    for grade_id, source in answers.items():
        assert page.evaluate(JS_SET_SOURCE, [grade_id, source]), f"no answer cell {grade_id} in {EXERCISE}"
    page.evaluate(JS_RESTART_KERNEL)
    page.wait_for_function(JS_NOTEBOOK_READY, arg=EXERCISE, timeout=120_000, polling=500)
    state = run_all_and_wait(page, timeout_s=300)
    assert not error_summary(state), f"the answered exercise raised: {error_summary(state)}"
    for part in range(1, len(answers) + 1):
        shown = page.locator(".jp-OutputArea-output").filter(has_text=f"part {part} ok")
        assert shown.count() >= 1, f"the visible tests' message 'part {part} ok' is not shown"
    assert_no_error_shown(page)
    page.locator(".jp-OutputArea-output").filter(has_text=f"part {len(answers)} ok").first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "00_warmup_answered.png"))

    # nbgrader's Validate button (the learner side, also on Binder): saves, runs the notebook, reports.
    page.locator(".validate-button").first.click()
    result = page.locator(".validation-success, .validation-failed").first
    result.wait_for(state="visible", timeout=300_000)
    page.screenshot(path=str(screenshots / "00_warmup_validated.png"))
    assert "passes all the tests" in result.inner_text(), f"Validate did not pass: {result.inner_text()[:500]}"


def test_formgrader_loads_for_the_instructor(page, lab_server, screenshots):
    page.goto(lab_server.lab_url("/formgrader"))
    page.get_by_text("Manage Assignments").first.wait_for(state="visible")
    # The source assignments in solutions/ are listed (nbgrader_config.py: source_directory).
    for name in sorted(p.name for p in (lab_server.root / "solutions").iterdir() if p.is_dir()):
        page.locator("#main_table, table").get_by_text(name, exact=True).first.wait_for(state="visible")
    page.screenshot(path=str(screenshots / "formgrader.png"))
    assert not page.page_errors, f"JavaScript errors on the formgrader page: {page.page_errors[:3]}"

    # And from JupyterLab: nbgrader's lab extension opens the formgrader in a tab.
    page.goto(lab_server.lab_url("/lab?reset"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands.hasCommand('nbgrader:open-formgrader')",
                           timeout=120_000)
    page.evaluate("async () => { await window.jupyterapp.restored; "
                  "await window.jupyterapp.commands.execute('nbgrader:open-formgrader'); }")
    frame = page.frame_locator(".jp-MainAreaWidget iframe").first
    frame.get_by_text("Manage Assignments").first.wait_for(state="visible")
    frame.get_by_text("00_warmup", exact=True).first.wait_for(state="visible")
    page.screenshot(path=str(screenshots / "formgrader_in_lab.png"))
