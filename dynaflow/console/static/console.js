// dynaflow console: live updates, copy buttons. Plain JavaScript, nothing fetched from
// elsewhere. Live regions poll the JSON API at most once a second while the tab is visible;
// when what it answers changes, the region is drawn again by the server.
(function () {
  "use strict";

  var INTERVAL = 1000;

  function setStatus(text) {
    var status = document.querySelector("[data-testid=live-status]");
    if (status) status.textContent = text;
  }

  function startLive() {
    var live = document.getElementById("live");
    if (!live) return;
    var busy = false;
    var stopped = live.dataset.final === "true";
    var timer = null;

    function fetchOptions(accept) {
      return { credentials: "same-origin", headers: { Accept: accept }, cache: "no-store" };
    }

    function tick() {
      if (busy || stopped) return;
      if (document.hidden) { setStatus("paused while the tab is hidden"); return; }
      busy = true;
      fetch(live.dataset.liveApi, fetchOptions("application/json"))
        .then(function (answer) {
          if (!answer.ok) throw new Error("HTTP " + answer.status);
          return answer.json();
        })
        .then(function (data) {
          if (data.version === live.dataset.version) {
            setStatus(data.final ? "finished" : "live");
            if (data.final) stop();
            return null;
          }
          return fetch(live.dataset.livePartial, fetchOptions("text/html")).then(function (page) {
            if (!page.ok) throw new Error("HTTP " + page.status);
            return page.text().then(function (html) {
              live.innerHTML = html;
              live.dataset.version = data.version;
              live.dataset.final = data.final ? "true" : "false";
              setStatus(data.final ? "finished" : "updated " + new Date().toLocaleTimeString());
              if (data.final) stop();
              document.dispatchEvent(new CustomEvent("dynaflow:updated", { detail: data }));
            });
          });
        })
        .catch(function (error) { setStatus("not updating: " + error.message); })
        .then(function () { busy = false; });
    }

    function stop() {
      stopped = true;
      if (timer !== null) window.clearInterval(timer);
      timer = null;
    }

    if (!stopped) {
      timer = window.setInterval(tick, INTERVAL);
      document.addEventListener("visibilitychange", function () {
        if (!document.hidden) { setStatus("live"); tick(); }
      });
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy") : null;
    if (!button) return;
    var text = button.dataset.copy;
    var done = function () {
      button.textContent = "copied";
      window.setTimeout(function () { button.textContent = "copy"; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectId(button); });
    } else {
      selectId(button);
    }
  });

  function selectId(button) {
    var code = button.parentElement.querySelector("code.id");
    if (!code) return;
    var range = document.createRange();
    range.selectNodeContents(code);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "selected: press Ctrl+C";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startLive);
  } else {
    startLive();
  }
})();
