/* Rivya settings pages and Studio: progressive enhancement only.
 *
 * Every page works without this file; it adds the copy button next to a new
 * secret, live task updates, and in Studio shows only the chosen model's
 * parameter fields and its price (a dry run) as the form changes. Live updates arrive over a WebSocket
 * (/ws/tasks, authenticated by the session cookie) and fall back to polling a
 * small JSON endpoint while the socket is unavailable. Nothing here loads
 * anything from another origin.
 */
(function () {
  "use strict";

  var TERMINAL = { succeeded: true, failed: true, canceled: true };

  function setupCopyButtons() {
    var buttons = document.querySelectorAll("[data-copy-target]");
    Array.prototype.forEach.call(buttons, function (button) {
      var input = document.getElementById(button.getAttribute("data-copy-target"));
      if (!input) return;
      var box = button.closest(".secret-box");
      var status = box ? box.querySelector(".copy-status") : null;
      button.hidden = false;
      button.addEventListener("click", function () {
        function report(ok) {
          if (status) status.textContent = ok ? "Copied to the clipboard." : "Press Ctrl+C (⌘C) to copy the selected secret.";
        }
        input.focus();
        input.select();
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(input.value).then(function () { report(true); }, function () { report(legacyCopy()); });
        } else {
          report(legacyCopy());
        }
      });
    });
  }

  function legacyCopy() {
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }

  /* A download URL from a payload, made same-origin: payloads built outside a
   * request carry the configured public origin, but the pages are served by the
   * same project, so the path and signature are what matter. */
  function sameOrigin(url) {
    try { var parsed = new URL(url, window.location.href); return parsed.pathname + parsed.search; } catch (e) { return url; }
  }

  function outputElement(file) {
    if (!file.url) return null;
    var url = sameOrigin(file.url);
    var type = file.content_type || "";
    var el;
    if (type.indexOf("image/") === 0) {
      el = document.createElement("img");
      el.src = url;
      el.alt = "Output " + file.id;
      el.loading = "lazy";
    } else if (type.indexOf("audio/") === 0) {
      el = document.createElement("audio");
      el.controls = true;
      el.preload = "metadata";
      el.src = url;
    } else if (type.indexOf("video/") === 0) {
      el = document.createElement("video");
      el.controls = true;
      el.preload = "metadata";
      el.src = url;
    } else {
      el = document.createElement("a");
      el.href = url;
      el.textContent = file.filename || file.id;
    }
    el.setAttribute("data-output-id", file.id);
    return el;
  }

  function LiveTasks(root) {
    this.root = root;
    this.wsPath = root.getAttribute("data-ws-path");
    this.pollUrl = root.getAttribute("data-poll-url");
    this.rowUrl = root.getAttribute("data-row-url");
    this.walletUrl = root.getAttribute("data-wallet-url");
    this.stateEl = root.querySelector("[data-live-state]");
    this.pollEvery = parseInt(root.getAttribute("data-poll-seconds") || "3", 10) * 1000;
    this.pollTimer = null;
    this.retry = 0;
    this.connectedBefore = false;
  }

  LiveTasks.prototype.setState = function (text, mode) {
    if (this.stateEl) this.stateEl.textContent = text;
    this.root.setAttribute("data-live-mode", mode);
  };

  LiveTasks.prototype.rows = function () {
    return this.root.querySelectorAll("[data-task-id]");
  };

  LiveTasks.prototype.pendingIds = function () {
    var ids = [];
    Array.prototype.forEach.call(this.rows(), function (row) {
      if (!TERMINAL[row.getAttribute("data-status")]) ids.push(row.getAttribute("data-task-id"));
    });
    return ids;
  };

  LiveTasks.prototype.apply = function (task) {
    var row = this.root.querySelector('[data-task-id="' + task.id + '"]');
    if (!row) { this.insertRow(task.id); return; }
    // A finished task stays finished: a late update from another process (a worker's queued send) is stale.
    if (TERMINAL[row.getAttribute("data-status")] && !TERMINAL[task.status]) return;
    var finished = TERMINAL[task.status] && !TERMINAL[row.getAttribute("data-status")];
    row.setAttribute("data-status", task.status);
    if (finished) this.refreshWallet();
    var badge = row.querySelector('[data-field="status"]');
    if (badge) { badge.textContent = task.status; badge.className = "badge status-" + task.status; }
    var progress = row.querySelector('[data-field="progress"]');
    if (progress) progress.textContent = TERMINAL[task.status] ? "" : task.progress + "%";
    var credits = row.querySelector('[data-field="credits"]');
    if (credits && task.credits) {
      credits.textContent = task.status === "succeeded" ? task.credits.charged + " charged"
        : TERMINAL[task.status] ? task.credits.released + " released" : task.credits.reserved + " reserved";
    }
    var error = row.querySelector('[data-field="error"]');
    if (error) error.textContent = task.error ? task.error.message : "";
    var outputs = row.querySelector('[data-field="outputs"]');
    if (outputs && task.outputs && task.outputs.length) {
      var known = {};
      Array.prototype.forEach.call(outputs.querySelectorAll("[data-output-id]"), function (el) { known[el.getAttribute("data-output-id")] = true; });
      task.outputs.forEach(function (file) {
        if (known[file.id]) return;
        var el = outputElement(file);
        if (el) outputs.appendChild(el);
      });
    }
    var cancel = row.querySelector("[data-cancel]");
    if (cancel && TERMINAL[task.status]) cancel.remove();
  };

  /* The wallet's numbers on the page, once a task has been charged or released. */
  LiveTasks.prototype.refreshWallet = function () {
    if (!this.walletUrl || !document.querySelector("[data-wallet]")) return;
    fetch(this.walletUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (wallet) {
        if (!wallet) return;
        Array.prototype.forEach.call(document.querySelectorAll("[data-wallet]"), function (el) {
          var key = el.getAttribute("data-wallet");
          if (key in wallet) el.textContent = wallet[key];
        });
      })
      .catch(function () {});
  };

  /* A task this page has not seen (submitted elsewhere): fetch its row as the server renders it. */
  LiveTasks.prototype.insertRow = function (taskId) {
    if (!this.rowUrl) return;
    var body = this.root.querySelector("tbody");
    if (!body || this.root.querySelector('[data-task-id="' + taskId + '"]')) return;
    var self = this;
    fetch(this.rowUrl.replace("TASK_ID", encodeURIComponent(taskId)), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        if (!html || self.root.querySelector('[data-task-id="' + taskId + '"]')) return;
        var holder = document.createElement("tbody");
        holder.innerHTML = html.trim();
        var row = holder.firstElementChild;
        if (row) body.insertBefore(row, body.firstChild);
        var empty = self.root.querySelector("[data-empty]");
        if (empty) empty.remove();
      });
  };

  LiveTasks.prototype.poll = function () {
    var ids = this.pendingIds();
    if (!ids.length || !this.pollUrl) return;
    var self = this;
    var url = this.pollUrl + (this.pollUrl.indexOf("?") < 0 ? "?" : "&") + "ids=" + encodeURIComponent(ids.join(","));
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { data: [] }; })
      .then(function (body) { (body.data || []).forEach(function (task) { self.apply(task); }); })
      .catch(function () {});
  };

  LiveTasks.prototype.startPolling = function () {
    if (this.pollTimer) return;
    var self = this;
    this.setState("Live updates unavailable: checking every few seconds.", "polling");
    this.pollTimer = window.setInterval(function () { self.poll(); }, this.pollEvery);
  };

  LiveTasks.prototype.stopPolling = function () {
    if (this.pollTimer) { window.clearInterval(this.pollTimer); this.pollTimer = null; }
  };

  LiveTasks.prototype.connect = function () {
    if (!this.wsPath || !("WebSocket" in window)) { this.startPolling(); return; }
    var self = this;
    var socket;
    try {
      socket = new WebSocket((window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + this.wsPath);
    } catch (e) {
      this.startPolling();
      return;
    }
    socket.addEventListener("open", function () {
      self.retry = 0;
      self.stopPolling();
      self.setState("Live", "websocket");
      // Catch up over the socket on what changed between rendering the page and subscribing.
      var ids = self.pendingIds();
      if (ids.length) socket.send(JSON.stringify({ type: "tasks.sync", ids: ids }));
    });
    socket.addEventListener("message", function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "generation.update" && message.task) self.apply(message.task);
    });
    socket.addEventListener("close", function () {
      self.startPolling();
      var wait = Math.min(30000, 1000 * Math.pow(2, self.retry++));
      window.setTimeout(function () { self.connect(); }, wait);
    });
  };

  /* Studio: the chosen model's fields only, and the price of the form as it stands. */
  function setupStudio(form) {
    var select = form.querySelector("select[name=model]");
    var price = form.querySelector("[data-price]");
    var url = form.getAttribute("data-price-url");
    var timer = null;
    var asked = 0;
    function showChosen() {
      Array.prototype.forEach.call(form.querySelectorAll("fieldset[data-model]"), function (set) {
        var chosen = set.getAttribute("data-model") === select.value;
        set.hidden = !chosen;
        set.disabled = !chosen; // the other models' fields are not sent
      });
    }
    function say(text, bad) {
      price.textContent = "";
      var line = document.createElement("span");
      if (bad) line.className = "field-error";
      line.textContent = text;
      price.appendChild(line);
    }
    function quote() {
      if (!url) return;
      var ticket = ++asked;
      var body = new FormData(form);
      body.delete("action");
      fetch(url, { method: "POST", body: body, credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (ticket !== asked) return; // a later change asked again
          var prompt = form.querySelector("[name=prompt]");
          if (data.error && data.error.param === "prompt" && prompt && !prompt.value.trim()) {
            say("Write a prompt to see the price.", false);
          } else if (data.error) {
            say(data.error.message, true);
          } else {
            say("Price: " + data.price + " credit" + (data.price === 1 ? "" : "s") + ", " + data.available + " available." +
              (data.enough ? "" : " Not enough credits."), !data.enough);
            price.setAttribute("data-price-value", String(data.price));
          }
        }, function () { if (ticket === asked) say("The price could not be checked.", true); });
    }
    function later() {
      window.clearTimeout(timer);
      timer = window.setTimeout(quote, 250);
    }
    select.addEventListener("change", function () { showChosen(); later(); });
    form.addEventListener("input", later);
    form.addEventListener("change", later);
    showChosen();
    quote();
  }

  setupCopyButtons();
  Array.prototype.forEach.call(document.querySelectorAll("form[data-studio]"), setupStudio);
  var roots = document.querySelectorAll("[data-live-tasks]");
  Array.prototype.forEach.call(roots, function (root) { new LiveTasks(root).connect(); });
})();
