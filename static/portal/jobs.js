// The job page: one Chart.js line per metric (x = step), fed by the JSON that each live fragment
// carries (#job-metric-points: {name: [[step, value], ...]}), and a log tail that stays at its
// newest line unless the reader scrolled up. A fragment may repeat points it sent before (see
// verticals/portal/jobs.py); a series keeps one point per step, so repeats are dropped here.
(function () {
  "use strict";

  const PALETTE = ["#cf222e", "#1a7f37", "#8250df", "#bf8700", "#0969da", "#e16f24", "#57606a"];
  let chart = null;
  const lastStep = new Map(); // metric name -> the last step drawn
  let followLog = true;
  let logScrollTop = 0;

  function brandColour() {
    const value = getComputedStyle(document.documentElement).getPropertyValue("--brand").trim();
    return value || "#1f6feb";
  }

  function makeChart(canvas) {
    if (chart || !canvas || !window.Chart) return chart;
    chart = new window.Chart(canvas, {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 2, tension: 0.15 } },
        scales: {
          x: { type: "linear", title: { display: true, text: "step" }, ticks: { precision: 0 } },
          y: { type: "linear", title: { display: true, text: "value" } },
        },
        plugins: { legend: { position: "bottom" } },
      },
    });
    return chart;
  }

  function datasetFor(name) {
    let dataset = chart.data.datasets.find((d) => d.label === name);
    if (!dataset) {
      const index = chart.data.datasets.length;
      const colour = index === 0 ? brandColour() : PALETTE[(index - 1) % PALETTE.length];
      dataset = { label: name, data: [], borderColor: colour, backgroundColor: colour };
      chart.data.datasets.push(dataset);
    }
    return dataset;
  }

  function addPoints(series) {
    const canvas = document.getElementById("job-chart");
    const entries = Object.entries(series || {}).filter(([, points]) => points.length);
    if (!canvas || !entries.length) return;
    // The chart's box stays hidden until there is something to draw.
    canvas.parentElement.hidden = false;
    if (!makeChart(canvas)) return;
    let added = 0;
    for (const [name, points] of entries) {
      const dataset = datasetFor(name);
      for (const [step, value] of points) {
        if (lastStep.has(name) && step <= lastStep.get(name)) continue;
        dataset.data.push({ x: step, y: value });
        lastStep.set(name, step);
        added += 1;
      }
    }
    if (added) {
      chart.update("none");
      const total = chart.data.datasets.reduce((sum, d) => sum + d.data.length, 0);
      canvas.dataset.points = String(total);
      const empty = document.getElementById("job-chart-empty");
      if (empty) empty.hidden = true;
    }
  }

  function readPoints(root) {
    const script = root && root.id === "job-metric-points" ? root : root && root.querySelector && root.querySelector("#job-metric-points");
    if (!script) return;
    try {
      addPoints(JSON.parse(script.textContent));
    } catch (error) {
      console.error("job page: unreadable metric points", error);
    }
  }

  function placeLog() {
    const log = document.getElementById("job-log-lines");
    if (!log) return;
    log.scrollTop = followLog ? log.scrollHeight : logScrollTop;
  }

  // Scroll events do not bubble: listen in the capture phase for the log's own scrolling.
  document.addEventListener("scroll", (event) => {
    const log = event.target;
    if (!log || log.id !== "job-log-lines") return;
    logScrollTop = log.scrollTop;
    followLog = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
  }, true);

  // Every fragment htmx puts in the page (the live part, and the log out of band).
  document.addEventListener("htmx:load", (event) => {
    readPoints(event.detail.elt);
    placeLog();
  });
  document.addEventListener("htmx:oobAfterSwap", placeLog);

  document.addEventListener("DOMContentLoaded", () => {
    readPoints(document);
    placeLog();
  });
})();
