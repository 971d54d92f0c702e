// inferq console: live updates over Server-Sent Events. Plain JavaScript,
// no dependencies; every page works without it, only less live.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Overview: the server renders the models table again every 2 s.
  const models = document.getElementById("models");
  if (models && window.EventSource) {
    const es = new EventSource(models.dataset.stream);
    es.addEventListener("models", (ev) => { models.innerHTML = ev.data; });
  }

  // A job's page: status changes and tokens as they stream.
  const job = document.getElementById("job");
  if (job && window.EventSource) {
    const status = document.getElementById("status");
    const tokens = document.getElementById("tokens");
    const state = document.getElementById("stream-state");
    const terminalAtLoad = job.dataset.terminal === "true";
    const es = new EventSource(job.dataset.events);
    const setStatus = (s) => {
      if (!s) return;
      status.textContent = s;
      status.className = "status s-" + s;
    };
    es.addEventListener("status", (ev) => {
      if (terminalAtLoad) return; // replaying an ended job's tokens
      setStatus(JSON.parse(ev.data).status);
      state.textContent = "Streaming…";
    });
    es.addEventListener("token", (ev) => { tokens.textContent += JSON.parse(ev.data).text; });
    const end = (ev, s) => {
      es.close();
      setStatus(s);
      state.textContent = "The job ended: " + s + ".";
      // A job that ended while the page was open: load its final record
      // (timings, result, the Replay button).
      if (!terminalAtLoad) setTimeout(() => location.replace(location.pathname), 600);
    };
    es.addEventListener("result", (ev) => end(ev, JSON.parse(ev.data).status || "succeeded"));
    es.addEventListener("error", (ev) => {
      if (ev.data) { end(ev, JSON.parse(ev.data).status); return; }
      if (es.readyState === EventSource.CLOSED) state.textContent = "The live stream closed.";
    });
  }
});
