// runbook dashboard: auto-refresh of live parts, and the heat map's hover and click. No build step.
"use strict";

// Parts with data-refresh="URL" are fetched again every data-interval seconds (unless paused
// or the tab is hidden) and replaced in place.
function startRefresh(box) {
  const url = box.dataset.refresh;
  const seconds = Number(box.dataset.interval || 0);
  if (!url || !seconds) return;
  let paused = false;
  box.addEventListener("change", (event) => {
    if (event.target.classList.contains("pause")) paused = event.target.checked;
  });
  setInterval(async () => {
    if (paused || document.hidden) return;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) box.innerHTML = await response.text();
    } catch (error) {
      /* the server restarts: keep the last view */
    }
  }, seconds * 1000);
}

function addDays(iso, days) {
  const day = new Date(iso + "T00:00:00Z");
  day.setUTCDate(day.getUTCDate() + days);
  return day.toISOString().slice(0, 10);
}

function lastOfMonth(month) {
  const [year, number] = month.split("-").map(Number);
  return new Date(Date.UTC(year, number, 0)).toISOString().slice(0, 10);
}

// Where in the heat map a pointer is: the row's processor, the date under it, the span's state.
function cellAt(svg, event) {
  const rect = event.target.closest("rect[data-i]");
  if (!rect) return null;
  const box = rect.getBoundingClientRect();
  const count = Number(rect.dataset.n);
  const offset = Math.min(count - 1, Math.max(0, Math.floor((event.clientX - box.left) / (box.width / count))));
  const index = Number(rect.dataset.i) + offset;
  return {
    rect: rect,
    processor: rect.closest("g.hm-row").dataset.processor,
    date: addDays(svg.dataset.start, index),
    index: index,
    state: rect.dataset.state,
  };
}

function outline(svg, found, className) {
  let mark = svg.querySelector("rect." + className);
  if (!mark) {
    mark = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    mark.setAttribute("class", className);
    svg.querySelector("g").appendChild(mark);
  }
  const width = Number(found.rect.getAttribute("width")) / Number(found.rect.dataset.n);
  const x = Number(found.rect.getAttribute("x")) + (found.index - Number(found.rect.dataset.i)) * width;
  mark.setAttribute("x", x - 1);
  mark.setAttribute("y", Number(found.rect.getAttribute("y")) - 1);
  mark.setAttribute("width", Math.max(width, 1) + 2);
  mark.setAttribute("height", Number(found.rect.getAttribute("height")) + 2);
}

async function showCell(panel, processor, date) {
  panel.classList.add("loading");
  const query = new URLSearchParams({ processor: processor, date: date });
  const response = await fetch("/heatmap/cell?" + query, { credentials: "same-origin" });
  panel.innerHTML = await response.text();
  panel.classList.remove("loading");
  panel.dataset.processor = processor;
  panel.dataset.date = date;
  const url = new URL(window.location.href);
  url.searchParams.set("processor", processor);
  url.searchParams.set("date", date);
  window.history.replaceState(null, "", url);
}

function startHeatmap(svg) {
  const hover = document.getElementById("hm-hover");
  const panel = document.getElementById("cell");
  svg.addEventListener("mousemove", (event) => {
    const found = cellAt(svg, event);
    if (!found) return;
    hover.textContent = found.processor + " · " + found.date + " · " + found.state.replace(/_/g, " ");
    outline(svg, found, "hm-hover");
  });
  svg.addEventListener("click", (event) => {
    const tick = event.target.closest("text.hm-tick");
    if (tick) {
      const month = tick.dataset.month;
      window.location.href = "/heatmap?start=" + month + "-01&end=" + lastOfMonth(month);
      return;
    }
    const found = cellAt(svg, event);
    if (!found || !panel) return;
    outline(svg, found, "hm-selected");
    showCell(panel, found.processor, found.date);
  });
  if (panel && panel.dataset.processor && panel.dataset.date) {
    showCell(panel, panel.dataset.processor, panel.dataset.date);
  }
}

// A click on a legend entry shows only the cells in that state (a second click shows all again).
function startLegend(legend, svg) {
  legend.addEventListener("click", (event) => {
    const entry = event.target.closest("li[data-state]");
    if (!entry) return;
    const state = entry.classList.contains("only") ? null : entry.dataset.state;
    legend.querySelectorAll("li").forEach((li) => li.classList.toggle("only", li.dataset.state === state));
    svg.querySelectorAll("rect[data-state]").forEach((rect) => {
      rect.style.opacity = state === null || rect.dataset.state === state ? "" : "0.15";
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(startRefresh);
  document.querySelectorAll("svg.heatmap").forEach(startHeatmap);
  const legend = document.querySelector("ul.legend");
  const svg = document.querySelector("svg.heatmap");
  if (legend && svg) startLegend(legend, svg);
});
