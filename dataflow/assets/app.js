// tradeflow's live dashboard. The server pushes coalesced updates (server-sent events,
// a few per second whatever the trade rate); the page applies them to its state and
// redraws at most once per animation frame. A point is one window:
// [start ms, open, high, low, close, vwap, volume, trades, final, anomaly bits].
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const T = 0, CLOSE = 4, VWAP = 5, VOLUME = 6, FINAL = 8, MARKS = 9;
  const SPIKE = 1, JUMP = 2;
  const KEEP = 720;

  const state = {
    symbol: new URLSearchParams(location.search).get("symbol"),
    symbols: [],
    points: new Map(),
    anomalies: [],
    health: null,
    info: null,
    updates: 0,
    snapshots: 0,
    renders: 0,
    // When the last snapshot or update arrived (ms since the epoch), and whether the
    // event stream is up.
    lastUpdate: 0,
    connected: false,
  };
  // For tests and the curious: the page's state, read-only by convention.
  window.tradeflow = state;

  const number = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const fmt = (x, digits = 2) => (x == null || !Number.isFinite(x) ? "–" : x.toLocaleString("en-US", { maximumFractionDigits: digits }));
  const price = (x) => (x == null ? "–" : Number(x.toPrecision(10)).toLocaleString("en-US", { maximumFractionDigits: 8 }));
  const utc = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
  const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumSignificantDigits: 4 });
  const bytes = (n) => (n / 1048576).toFixed(1) + " MiB";
  const seconds = (s) => (s == null ? "–" : Math.abs(s) < 120 ? s.toFixed(1) + " s" : Math.abs(s) < 7200 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h");

  // ---- charts -------------------------------------------------------------------
  // Value axis labels: plain numbers with the decimals the ticks need, the same on every
  // tick (3,500, 37,015 or 1.0850), or, when those get long and compact ones are shorter
  // and exact, compact ones (0, 400k, 800k, 1.2M or 2.5B); and the axis is as wide as
  // its widest label, so none is cut off.
  const UNITS = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "k"]];
  const decimals = (step) => {
    for (let d = 0; d < 12; d++) {
      const x = Math.abs(step) * 10 ** d;
      if (Math.abs(x - Math.round(x)) <= 1e-6 * Math.max(1, x)) return d;
    }
    return 12;
  };
  const longest = (labels) => labels.reduce((n, l) => Math.max(n, l.length), 0);
  const digits = (values, step) => Math.min(10, Math.max(decimals(step), ...values.map(decimals)));
  function axisLabels(splits, step) {
    const finite = splits.filter((v) => v != null && Number.isFinite(v));
    if (!finite.length) return splits.map(() => "");
    if (!(step > 0)) step = finite.length > 1 ? Math.abs(finite[1] - finite[0]) || 1 : Math.abs(finite[0]) || 1;
    const places = digits(finite, step);
    const plain = splits.map((v) =>
      v == null || !Number.isFinite(v) ? "" : v.toLocaleString("en-US", { minimumFractionDigits: places, maximumFractionDigits: places }),
    );
    if (longest(plain) <= 5) return plain;
    let exact = true;
    const short = splits.map((v) => {
      if (v == null || !Number.isFinite(v)) return "";
      if (v === 0) return "0";
      const [scale, suffix] = UNITS.find(([scale]) => Math.abs(v) >= scale) ?? [1, ""];
      const places = decimals(v / scale);
      exact &&= places <= 3;
      return (v / scale).toLocaleString("en-US", { maximumFractionDigits: places }) + suffix;
    });
    return exact && longest(short) < longest(plain) ? short : plain;
  }
  // uPlot asks for an axis's size with its labels, again while the layout settles (up to
  // three times a redraw: the labels can change with the plot's height, as when the
  // time axis first appears). Within one redraw the size only grows, so it settles on
  // the widest labels instead of going back to narrower ones.
  function axisSize(u, values, i, cycle) {
    const a = u.axes[i];
    let widest = 0;
    if (values && values.length) {
      u.ctx.font = a.font[0];
      for (const v of values) widest = Math.max(widest, u.ctx.measureText(v).width / uPlot.pxRatio);
    }
    const size = Math.max(40, Math.ceil(widest + (a.ticks.show === false ? 0 : a.ticks.size) + a.gap + 6));
    return cycle > 1 && a._size > size ? a._size : size;
  }
  const axis = { stroke: "#9aa5b1", grid: { stroke: "#232b34", width: 1 }, ticks: { stroke: "#232b34" } };
  const valueAxis = { ...axis, size: axisSize, values: (u, splits, i, space, step) => axisLabels(splits, step) };
  // Window starts in UTC, whole seconds (windows are at least a millisecond, in practice seconds).
  const timeAxis = {
    ...axis,
    space: 70,
    incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400],
    values: (u, splits, i, space, incr) => splits.map((t) => new Date(t * 1000).toISOString().slice(11, incr >= 60 ? 16 : 19)),
  };
  const windowSeries = { label: "window", value: (u, v) => (v == null ? "–" : utc(v * 1000)) };
  const bars = uPlot.paths.bars({ size: [0.8, 24] });
  const priceChart = new uPlot(
    {
      width: 600,
      height: 300,
      scales: { x: { time: true } },
      axes: [timeAxis, valueAxis],
      series: [
        windowSeries,
        { label: "close", stroke: "#4e9af1", width: 1.5, value: (u, v) => price(v) },
        { label: "VWAP", stroke: "#f2a541", width: 2, value: (u, v) => price(v) },
        {
          label: "price jump",
          stroke: "#ff4d4f",
          width: 0,
          paths: () => null,
          points: { show: true, size: 11, fill: "#ff4d4f", stroke: "#ff4d4f" },
          value: (u, v) => price(v),
        },
      ],
    },
    [[], [], [], []],
    $("price-chart"),
  );
  const volumeChart = new uPlot(
    {
      width: 600,
      height: 180,
      // Bars stand on zero.
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] } },
      axes: [timeAxis, valueAxis],
      series: [
        windowSeries,
        { label: "volume", stroke: "#4e9af1", fill: "#4e9af166", paths: bars, points: { show: false }, value: (u, v) => fmt(v, 4) },
        { label: "volume spike", stroke: "#ff4d4f", fill: "#ff4d4fcc", paths: bars, points: { show: false }, value: (u, v) => fmt(v, 4) },
      ],
    },
    [[], [], []],
    $("volume-chart"),
  );
  const resize = () => {
    for (const [chart, id] of [[priceChart, "price-chart"], [volumeChart, "volume-chart"]]) {
      const width = Math.max(300, $(id).clientWidth);
      chart.setSize({ width, height: chart.height });
    }
  };
  window.addEventListener("resize", resize);
  // For tests: the charts and the axis label formatter.
  state.charts = { price: priceChart, volume: volumeChart };
  state.axisLabels = axisLabels;

  // ---- applying what the server sends --------------------------------------------
  let dirty = { chart: true, table: true, health: true, symbols: true };
  let frame = 0;
  const schedule = () => {
    if (frame) return;
    // Hidden pages get no animation frames: fall back to a timer.
    frame = document.hidden ? setTimeout(render, 250) : requestAnimationFrame(render);
  };

  function setPoints(points) {
    for (const p of points) state.points.set(p[T], p);
    if (state.points.size > KEEP) {
      const keys = [...state.points.keys()].sort((a, b) => a - b);
      for (const k of keys.slice(0, keys.length - KEEP)) state.points.delete(k);
    }
  }

  function onSnapshot(s) {
    state.snapshots += 1;
    state.lastUpdate = Date.now();
    state.info = s.info;
    state.symbol = s.symbol;
    state.points = new Map();
    setPoints(s.points);
    state.symbols = s.symbols;
    state.anomalies = s.anomalies;
    state.health = s.health;
    dirty = { chart: true, table: true, health: true, symbols: true };
    schedule();
  }

  function onUpdate(u) {
    state.updates += 1;
    state.lastUpdate = Date.now();
    if (u.symbols) {
      state.symbols = u.symbols;
      dirty.symbols = true;
    }
    if (u.anomalies) {
      state.anomalies = u.anomalies;
      dirty.table = true;
    }
    if (u.points.length) {
      setPoints(u.points);
      dirty.chart = true;
    }
    state.health = u.health;
    dirty.health = true;
    schedule();
  }

  let source = null;
  function connect() {
    if (source) source.close();
    const query = state.symbol ? "?symbol=" + encodeURIComponent(state.symbol) : "";
    source = new EventSource("/api/events" + query);
    source.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
    source.addEventListener("update", (e) => onUpdate(JSON.parse(e.data)));
    source.onopen = () => setConnected(true);
    source.onerror = () => setConnected(false);
  }

  function setConnected(up) {
    state.connected = up;
    const el = $("conn");
    el.textContent = up ? "live" : "reconnecting";
    el.className = "conn " + (up ? "up" : "down");
    renderStatus();
  }

  function choose(symbol) {
    if (!symbol || symbol === state.symbol) return;
    state.symbol = symbol;
    state.points = new Map();
    const url = new URL(location.href);
    url.searchParams.set("symbol", symbol);
    history.replaceState(null, "", url);
    if (document.activeElement !== $("symbol")) $("symbol").value = symbol;
    dirty.chart = true;
    schedule();
    connect();
  }

  // ---- the symbol search ----------------------------------------------------------
  // A text box with at most MATCHES suggestions: the symbols containing what was typed,
  // ignoring case, exact match first, then those starting with it, then the rest, each
  // in symbol order. The list never holds every symbol, so 10,000 symbols cost the page
  // no more than ten. Arrow keys move through the suggestions, Enter or a click shows
  // one, Escape closes them.
  const MATCHES = 50;
  const search = { symbols: null, lower: [], matches: [], active: -1 };

  function findSymbols(query) {
    const q = query.trim().toLowerCase();
    const exact = [], start = [], inside = [];
    let total = 0;
    search.lower.forEach((s, i) => {
      const at = q ? s.indexOf(q) : 0;
      if (at < 0) return;
      total += 1;
      if (at > 0) {
        if (inside.length < MATCHES) inside.push(i);
      } else if (s.length === q.length) exact.push(i);
      else if (start.length < MATCHES) start.push(i);
    });
    const matches = exact.concat(start, inside).slice(0, MATCHES).map((i) => state.symbols[i]);
    return { query: q, matches, total };
  }

  // `keep`: the same suggestion stays active (the list changed under the user's keys).
  function showMatches(keep = false) {
    const input = $("symbol");
    // A box still showing the current symbol (just focused) lists every symbol.
    const query = input.value === state.symbol ? "" : input.value;
    const previous = search.matches[search.active];
    const { query: q, matches, total } = findSymbols(query);
    search.matches = matches;
    search.active = keep ? matches.indexOf(previous) : -1;
    if (search.active < 0) search.active = q && matches.length ? 0 : matches.indexOf(state.symbol);
    const items = matches.map((symbol, i) => {
      const li = document.createElement("li");
      li.id = "symbol-option-" + i;
      li.setAttribute("role", "option");
      li.dataset.symbol = symbol;
      const at = q ? symbol.toLowerCase().indexOf(q) : -1;
      if (at >= 0) {
        const mark = document.createElement("mark");
        mark.textContent = symbol.slice(at, at + q.length);
        li.append(symbol.slice(0, at), mark, symbol.slice(at + q.length));
      } else {
        li.textContent = symbol;
      }
      if (symbol === state.symbol) li.classList.add("current");
      return li;
    });
    $("symbol-list").replaceChildren(...items);
    $("symbol-more").textContent = !state.symbols.length
      ? "no symbols yet"
      : !total
        ? `no symbol contains “${query.trim()}”`
        : total > matches.length
          ? `${number.format(matches.length)} of ${number.format(total)} shown: type more to narrow`
          : "";
    $("symbol-popup").hidden = false;
    input.setAttribute("aria-expanded", "true");
    setActive(search.active);
  }

  function setActive(i) {
    const input = $("symbol");
    const list = $("symbol-list");
    search.active = i;
    for (const li of list.children) li.setAttribute("aria-selected", String(li.id === "symbol-option-" + i));
    const li = i >= 0 ? list.children[i] : null;
    if (li) {
      input.setAttribute("aria-activedescendant", li.id);
      li.scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function closeMatches() {
    $("symbol-popup").hidden = true;
    $("symbol-list").replaceChildren();
    search.matches = [];
    search.active = -1;
    $("symbol").setAttribute("aria-expanded", "false");
    $("symbol").removeAttribute("aria-activedescendant");
  }

  function pick(symbol) {
    closeMatches();
    $("symbol").value = symbol;
    $("symbol").select();
    choose(symbol);
  }

  {
    const input = $("symbol");
    input.addEventListener("focus", () => {
      input.select();
      showMatches();
    });
    input.addEventListener("input", () => showMatches());
    input.addEventListener("blur", () => {
      closeMatches();
      if (state.symbol) input.value = state.symbol;
    });
    input.addEventListener("keydown", (e) => {
      const open = !$("symbol-popup").hidden;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        if (!open) return showMatches();
        const n = search.matches.length;
        if (n) setActive(e.key === "ArrowDown" ? Math.min(n - 1, search.active + 1) : Math.max(0, search.active - 1));
      } else if (e.key === "Enter") {
        e.preventDefault();
        const typed = input.value.trim().toLowerCase();
        const symbol = open ? search.matches[search.active] : state.symbols.find((s) => s.toLowerCase() === typed);
        if (symbol) pick(symbol);
      } else if (e.key === "Escape" && open) {
        e.preventDefault();
        closeMatches();
        if (state.symbol) input.value = state.symbol;
        input.select();
      }
    });
    // mousedown, not click: the box keeps its focus, so its blur does not close the list first.
    $("symbol-popup").addEventListener("mousedown", (e) => {
      e.preventDefault();
      const li = e.target.closest("li[role=option]");
      if (li) pick(li.dataset.symbol);
    });
  }

  $("range").addEventListener("change", () => {
    dirty.chart = true;
    schedule();
  });

  // ---- drawing ------------------------------------------------------------------
  function render() {
    frame = 0;
    state.renders += 1;
    if (dirty.symbols) renderSymbols();
    if (dirty.chart) renderCharts();
    if (dirty.table) renderAnomalies();
    if (dirty.health) renderHealth();
    dirty = { chart: false, table: false, health: false, symbols: false };
    $("updates").textContent = number.format(state.updates) + " updates";
    renderStatus();
  }

  function renderSymbols() {
    const input = $("symbol");
    if (search.symbols !== state.symbols) {
      search.symbols = state.symbols;
      search.lower = state.symbols.map((s) => s.toLowerCase());
      input.placeholder = `search ${number.format(state.symbols.length)} symbols`;
      if (!$("symbol-popup").hidden) showMatches(true);
    }
    if (state.symbol && document.activeElement !== input) input.value = state.symbol;
    if (state.info) {
      const i = state.info;
      const windowText = i.slide_ms === i.window_ms ? `${i.window_ms / 1000} s windows` : `${i.window_ms / 1000} s windows every ${i.slide_ms / 1000} s`;
      const proc = i.processes > 1 ? ` · process ${i.process} of ${i.processes} (its own symbols)` : "";
      $("run-info").textContent = `${windowText} · ${i.workers} worker(s)${proc} · sources: ${i.sources.join(", ")} · v${i.version}`;
    }
  }

  function renderCharts() {
    const range = Number($("range").value);
    let keys = [...state.points.keys()].sort((a, b) => a - b);
    if (range > 0) keys = keys.slice(-range);
    const xs = [], close = [], vwap = [], jumps = [], volume = [], spikes = [];
    for (const k of keys) {
      const p = state.points.get(k);
      xs.push(p[T] / 1000);
      close.push(p[CLOSE]);
      vwap.push(p[VWAP]);
      jumps.push(p[MARKS] & JUMP ? (p[VWAP] ?? p[CLOSE]) : null);
      const spike = (p[MARKS] & SPIKE) !== 0;
      volume.push(spike ? null : p[VOLUME]);
      spikes.push(spike ? p[VOLUME] : null);
    }
    priceChart.setData([xs, close, vwap, jumps]);
    volumeChart.setData([xs, volume, spikes]);
    for (const id of ["price-chart", "volume-chart"]) {
      $(id).dataset.points = String(xs.length);
      $(id).dataset.last = xs.length ? String(xs[xs.length - 1] * 1000) : "";
    }
    $("price-title").textContent = state.symbol ? `${state.symbol}: price and VWAP` : "Price and VWAP (waiting for trades)";
    const last = keys.length ? state.points.get(keys[keys.length - 1]) : null;
    $("price-last").textContent = last
      ? `close ${price(last[CLOSE])} · VWAP ${price(last[VWAP])} · ${number.format(last[7])} trades in the ${last[FINAL] ? "final" : "live"} window ${utc(last[T])}`
      : "";
  }

  let seenAnomalies = new Set();
  function renderAnomalies() {
    const key = (a) => `${a.symbol}|${a.window_start}|${a.kind}`;
    const rows = state.anomalies.map((a) => {
      const tr = document.createElement("tr");
      if (seenAnomalies.size && !seenAnomalies.has(key(a))) tr.className = "new";
      const cells = [
        [utc(a.window_start).slice(11), ""],
        [null, ""],
        [null, ""],
        [fmt(a.severity, 2), "num"],
        [
          a.kind === "volume_spike"
            ? `${compact.format(a.observed)} vs ${compact.format(a.baseline)}`
            : `r ${a.observed.toExponential(1)}, σ ${a.baseline.toExponential(1)}`,
          "num",
        ],
        [a.final ? "final" : "live", "muted"],
      ];
      cells.forEach(([text, cls], i) => {
        const td = document.createElement("td");
        if (cls) td.className = cls;
        if (i === 0) td.title = utc(a.window_start) + " to " + utc(a.window_end) + " UTC";
        if (i === 1) {
          const link = document.createElement("a");
          link.className = "sym";
          link.textContent = a.symbol;
          link.onclick = () => choose(a.symbol);
          td.append(link);
        } else if (i === 2) {
          const badge = document.createElement("span");
          badge.className = "kind " + a.kind;
          badge.textContent = a.kind === "volume_spike" ? "spike" : "jump";
          badge.title = a.kind.replace("_", " ");
          td.append(badge);
        } else {
          td.textContent = text;
        }
        tr.append(td);
      });
      return tr;
    });
    seenAnomalies = new Set(state.anomalies.map(key));
    $("anomalies").tBodies[0].replaceChildren(...rows);
    $("anomaly-count").textContent = state.anomalies.length ? `(${state.anomalies.length} newest)` : "(none yet)";
  }

  function renderHealth() {
    const h = state.health;
    if (!h) return;
    const rejects = Object.entries(h.rejects).filter(([, n]) => n > 0);
    const rows = [
      ["throughput", `${number.format(h.rate)} trades/s`],
      ["trades accepted", number.format(h.trades)],
      ["rejects", h.rejected ? `${number.format(h.rejected)} (${rejects.map(([r, n]) => `${r} ${number.format(n)}`).join(", ")})` : "none"],
      ["watermark", h.watermark == null ? "–" : utc(h.watermark)],
      ["watermark lag", seconds(h.lag_s)],
      ["open windows", number.format(h.open_windows)],
      ["final windows", number.format(h.final_windows)],
      ["final anomalies", number.format(h.anomalies)],
      ["live updates", number.format(h.live_updates)],
      ["memory", bytes(h.rss_bytes)],
      ["uptime", seconds(h.uptime_s)],
    ];
    $("health").tBodies[0].replaceChildren(
      ...rows.map(([k, v]) => {
        const tr = document.createElement("tr");
        tr.dataset.key = k;
        for (const text of [k, v]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        return tr;
      }),
    );
    const sinks = h.sinks.length
      ? h.sinks.map((s) => {
          const tr = document.createElement("tr");
          const cells = [
            [`${s.name} · ${s.target}`, ""],
            [s.status, s.status === "ok" ? "ok" : "bad"],
            [number.format(s.rows), "num"],
            [number.format(s.errors), s.errors ? "num bad" : "num"],
            [s.commit_p50_ms == null ? "–" : `${fmt(s.commit_p50_ms, 1)} ms`, "num"],
          ];
          for (const [text, cls] of cells) {
            const td = document.createElement("td");
            td.textContent = text;
            if (cls) td.className = cls;
            tr.append(td);
          }
          return tr;
        })
      : [Object.assign(document.createElement("tr"), { innerHTML: '<td colspan="5" class="muted">no sinks (--no-lake, no --postgres)</td>' })];
    $("sinks").tBodies[0].replaceChildren(...sinks);
  }

  // The status line says what is shown: data (how many symbols, when it last changed)
  // as soon as any arrived, whether the stream is up or reconnecting.
  function renderStatus() {
    const shown = state.symbols.length > 0 || state.points.size > 0;
    let text;
    if (!shown) {
      text = state.connected ? "connected · no windows yet" : "connecting";
    } else {
      const symbols = `${number.format(state.symbols.length)} symbol${state.symbols.length === 1 ? "" : "s"}`;
      const at = new Date(state.lastUpdate).toISOString().slice(11, 19) + " UTC";
      const age = (Date.now() - state.lastUpdate) / 1000;
      text = state.connected
        ? `live · ${symbols} · last update ${at}${age >= 2 ? ` (${seconds(age)} ago)` : ""}`
        : `reconnecting · ${symbols} · showing data as of ${at}`;
    }
    const el = $("status");
    if (el.textContent !== text) el.textContent = text;
  }
  setInterval(renderStatus, 500);

  resize();
  connect();
})();
