"""pages.js applies live task updates: a stale update never takes a finished task's row back.

Updates of one task come from different processes (a worker's queued sends, a web process's cancel,
a sweep), so a late "running" can arrive after "canceled". Marked ``node``: runs pages.js under Node
with a stub DOM and WebSocket."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PAGES_JS = Path(__file__).resolve().parents[3] / "rivya_api" / "static" / "rivya_api" / "pages.js"

HARNESS = r"""
const fs = require("fs");
function element(attrs) {
  return {
    attrs: Object.assign({}, attrs), children: {},
    getAttribute(name) { return name in this.attrs ? this.attrs[name] : null; },
    setAttribute(name, value) { this.attrs[name] = String(value); },
    querySelector(sel) { return this.children[sel] || null; },
    querySelectorAll() { return []; },
    remove() {},
  };
}
const badge = element({});
const row = element({"data-task-id": "t1", "data-status": "running"});
row.children['[data-field="status"]'] = badge;
const root = element({"data-ws-path": "/ws/tasks"});
root.querySelector = (sel) => (sel === '[data-task-id="t1"]' ? row : null);
const listeners = {};
global.window = {location: {protocol: "http:", host: "x"}, setTimeout() {}, WebSocket: true};
global.WebSocket = function () { return {addEventListener(type, fn) { listeners[type] = fn; }, send() {}}; };
global.document = {
  querySelectorAll(sel) { return sel === "[data-live-tasks]" ? [root] : []; },
  querySelector() { return null; },
};
global.fetch = () => new Promise(() => {});
eval(fs.readFileSync(process.argv[1], "utf8"));
for (const status of JSON.parse(process.argv[2])) {
  listeners.message({data: JSON.stringify({type: "generation.update", task: {id: "t1", status, progress: 0}})});
}
process.stdout.write(row.getAttribute("data-status") + " " + badge.textContent);
"""


def _apply(statuses: list[str]) -> str:
    node = shutil.which("node") or "node"  # the node marker skips without it (a failure in CI)
    run = subprocess.run(
        [node, "-e", HARNESS, str(PAGES_JS), json.dumps(statuses)], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.node
def test_a_late_running_does_not_reopen_a_canceled_task():
    assert _apply(["canceled", "running"]) == "canceled canceled"


@pytest.mark.node
def test_updates_in_order_are_applied():
    assert _apply(["queued", "running", "succeeded"]) == "succeeded succeeded"
