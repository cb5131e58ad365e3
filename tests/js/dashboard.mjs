// Loads tradeflow's live dashboard in Debian's headless Chromium (driven by
// playwright-core; no browser download) and checks that it fills and then updates:
// the price chart gets windows and then newer ones, the anomaly table gets rows and
// then changes, the health panel shows throughput, the status line says what is shown
// ("live · N symbols · last update …" whenever the chart has windows, never "waiting"),
// the value axes' labels fit the room their axis has (also for volumes in the billions,
// which get compact labels such as 5B), and the symbol search finds another symbol by a
// partial lower-case query (picked with a click, and one picked with the arrow keys and
// Enter) and redraws the charts for it. Saves a screenshot.
//
//   node dashboard.mjs http://127.0.0.1:8501/ /tmp/dashboard.png
//   node dashboard.mjs http://127.0.0.1:8501/ /tmp/dashboard.png 2000
//
// With a third argument N, it checks a run of (at least) N symbols instead: the page
// gets them all, never builds a list of them (at most 50 suggestions), stays
// responsive, and the search finds one of them and shows it.
//
// Prints one JSON object with what it saw on stdout; exits 1 (with the reason on
// stderr) when a check fails. CHROMIUM overrides /usr/bin/chromium; DASHBOARD_POINTS
// (default 3) is how many windows the chart must show before the checks start (more
// for a fuller screenshot, as for the README's docs/dashboard.png).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, screenshot, many] = process.argv.slice(2);
if (!url || !screenshot || (many !== undefined && !(Number(many) > 0))) {
  console.error("usage: node dashboard.mjs URL SCREENSHOT.png [SYMBOLS]");
  process.exit(2);
}
const WAIT = Number(process.env.DASHBOARD_WAIT_MS || 30000);
const POINTS = Number(process.env.DASHBOARD_POINTS || 3);

const profile = mkdtempSync(join(tmpdir(), "tradeflow-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
  ],
  viewport: { width: 1440, height: 900 },
});
const result = { errors: [] };
let failure = null;
const check = (ok, what) => {
  if (!ok) throw new Error(what);
};
// The suggestions shown for the search box's text: [symbol, active?].
const suggestions = (page) =>
  page.$$eval("#symbol-list [role=option]", (items) => items.map((li) => [li.dataset.symbol, li.getAttribute("aria-selected") === "true"]));
// A lower-case part of `symbol` that is not its start (the search matches substrings).
const partOf = (symbol) => symbol.toLowerCase().slice(1, Math.max(3, Math.min(symbol.length, 8)));
// The one lower-case letter of `symbol` (not its first) that most of `symbols` contain.
const broadPartOf = (symbol, symbols) => {
  const count = (c) => symbols.filter((s) => s.toLowerCase().includes(c)).length;
  return [...symbol.toLowerCase().slice(1)].reduce((best, c) => (count(c) > count(best) ? c : best));
};
// Types `query` into the search box, checks the suggestions (all contain it, ignoring
// case; at most 50; `symbol` among them), picks `symbol` with a click or the arrow keys
// and Enter, and waits until the charts show its windows.
async function search(page, query, symbol, how) {
  const snapshots = await page.evaluate(() => window.tradeflow.snapshots);
  const started = Date.now();
  await page.fill("#symbol", query);
  await page.waitForFunction(
    (s) => [...document.querySelectorAll("#symbol-list [role=option]")].some((li) => li.dataset.symbol === s),
    symbol,
    { timeout: WAIT },
  );
  const ms = Date.now() - started;
  const shown = await suggestions(page);
  const options = shown.map(([s]) => s);
  check(options.length <= 50, `${options.length} suggestions for ${query}`);
  check(options.every((s) => s.toLowerCase().includes(query)), `a suggestion for ${query} does not contain it: ${options}`);
  if (how === "click") {
    await page.click(`#symbol-option-${options.indexOf(symbol)}`);
  } else {
    const active = async () => (await suggestions(page)).findIndex(([, on]) => on);
    check((await active()) === 0, `the first suggestion for ${query} is not active`);
    if (options.length > 1) {
      await page.keyboard.press("ArrowDown");
      check((await active()) === 1, "ArrowDown does not move to the second suggestion");
      await page.keyboard.press("ArrowUp");
      check((await active()) === 0, "ArrowUp does not move back to the first suggestion");
    }
    for (let i = 0; i < 50 && (await active()) !== options.indexOf(symbol); i++) await page.keyboard.press("ArrowDown");
    await page.keyboard.press("Enter");
  }
  await page.waitForFunction(
    ([s, n]) =>
      window.tradeflow.symbol === s &&
      window.tradeflow.snapshots > n &&
      document.querySelector("#price-title").textContent === `${s}: price and VWAP` &&
      Number(document.querySelector("#price-chart").dataset.points) >= 1 &&
      window.tradeflow.charts.price.data[0].length === Number(document.querySelector("#price-chart").dataset.points),
    [symbol, snapshots],
    { timeout: WAIT },
  );
  const after = await page.evaluate(() => ({
    box: document.querySelector("#symbol").value,
    popup: !document.querySelector("#symbol-popup").hidden,
    url: location.search,
  }));
  check(after.box === symbol && !after.popup, `after picking ${symbol}: ${JSON.stringify(after)}`);
  check(new URLSearchParams(after.url).get("symbol") === symbol, `the URL does not name ${symbol}: ${after.url}`);
  return { query, how, suggestions: options.length, first: options.slice(0, 5), ms };
}
// Each chart's value axis as laid out (see window.__axes below).
const axes = (page) => page.evaluate(() => window.__axes());
const fits = (seen, what) => {
  for (const [name, a] of Object.entries(seen)) {
    check(a.labels.length > 0 && a.labels.every((l) => l !== ""), `${what}: no labels on the ${name} axis: ${JSON.stringify(a)}`);
    check(a.widest <= a.room, `${what}: the ${name} axis labels are cut off: ${JSON.stringify(a)}`);
  }
};
// The status line, and whether the page says "waiting" anywhere.
const status = (page) =>
  page.evaluate(() => ({ text: document.querySelector("#status").textContent, waiting: /waiting/i.test(document.body.innerText) }));
const live = (s, what) =>
  check(/^live · [\d,]+ symbols? · last update \d\d:\d\d:\d\d UTC/.test(s.text) && !s.waiting, `${what}: status ${JSON.stringify(s)}`);

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => result.errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && result.errors.push(m.text()));
  const external = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(new URL(url).origin)) external.push(r.url());
  });
  // Watches the page from its first line: any moment the chart shows windows while the
  // status line does not say so (it must start "live · " or "reconnecting · ") is
  // recorded; the old page's footer said "waiting for data" until its first pushed
  // update, with the snapshot's windows drawn.
  // window.__axes measures the value axes as uPlot laid them out (the vendored uPlot
  // 1.6's axis fields _values, _size and _pos, and its font): each axis's labels, the
  // widest one's width and the room left of the plot for them (the plot's left edge, or
  // the axis's size if smaller, less ticks and gap; a wider label is cut off).
  await page.addInitScript(() => {
    window.__staleStatus = [];
    const watch = () => {
      const chart = document.querySelector("#price-chart");
      const status = document.querySelector("#status") ?? document.querySelector("#last-update");
      if (chart && status && Number(chart.dataset.points || 0) > 0 && !/^(live|reconnecting) · /.test(status.textContent)) {
        if (window.__staleStatus.length < 10) window.__staleStatus.push(`${chart.dataset.points} windows: ${status.textContent}`);
      }
    };
    new MutationObserver(watch).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
    window.__axes = () =>
      Object.fromEntries(
        Object.entries(window.tradeflow.charts).map(([name, u]) => {
          const a = u.axes[1];
          u.ctx.font = a.font[0];
          const widest = Math.max(0, ...a._values.map((v) => u.ctx.measureText(v).width / uPlot.pxRatio));
          return [name, { labels: a._values, widest: Math.ceil(widest), room: Math.min(a._pos, a._size) - a.ticks.size - a.gap }];
        }),
      );
  });
  await page.goto(url);

  const chart = () =>
    page.evaluate((brief) => {
      const el = document.querySelector("#price-chart");
      const canvas = el.querySelector("canvas");
      return {
        points: Number(el.dataset.points || 0),
        last: Number(el.dataset.last || 0),
        volumePoints: Number(document.querySelector("#volume-chart").dataset.points || 0),
        canvas: canvas ? [canvas.width, canvas.height] : null,
        updates: window.tradeflow.updates,
        symbol: window.tradeflow.symbol,
        symbols: brief ? window.tradeflow.symbols.length : window.tradeflow.symbols,
        title: document.querySelector("#price-title").textContent,
      };
    }, Boolean(many));
  const table = () => page.$$eval("#anomalies tbody tr", (rows) => rows.map((r) => r.innerText.replace(/\s+/g, " ").trim()));
  const health = () =>
    page.$$eval("#health tr", (rows) => Object.fromEntries(rows.map((r) => [r.dataset.key, r.cells[1].textContent])));
  const staleStatus = async () => {
    result.staleStatus = await page.evaluate(() => window.__staleStatus);
    check(!result.staleStatus.length, `the status line did not say data was shown while the chart showed windows: ${result.staleStatus}`);
  };

  if (many) {
    // Thousands of symbols: the page gets them all and still shows one of them.
    const n = Number(many);
    await page.waitForFunction(
      (n) => window.tradeflow.symbols.length >= n && Number(document.querySelector("#price-chart").dataset.points) >= 1,
      n,
      { timeout: Math.max(WAIT, 90000) },
    );
    result.first = await chart();
    // It stays responsive: animation frames keep coming while updates stream in.
    result.frames = await page.evaluate(
      () =>
        new Promise((resolve) => {
          let last = performance.now(), worst = 0, frames = 0;
          const begin = last;
          const step = (t) => {
            worst = Math.max(worst, t - last);
            last = t;
            frames += 1;
            if (t - begin < 3000) requestAnimationFrame(step);
            else resolve({ frames, worstMs: Math.round(worst) });
          };
          requestAnimationFrame(step);
        }),
    );
    check(result.frames.worstMs < 1000, `a frame took ${result.frames.worstMs} ms`);
    // No element per symbol: the search box lists 50 and says how many more there are.
    await page.focus("#symbol");
    await page.waitForFunction(() => document.querySelectorAll("#symbol-list [role=option]").length > 0, null, { timeout: WAIT });
    result.opened = await page.evaluate(() => ({
      suggestions: document.querySelectorAll("#symbol-list [role=option]").length,
      more: document.querySelector("#symbol-more").textContent,
      elements: document.getElementsByTagName("*").length,
    }));
    const total = new Intl.NumberFormat("en-US").format(result.first.symbols);
    check(result.opened.suggestions === 50 && result.opened.more.includes(`of ${total}`), `the opened search: ${JSON.stringify(result.opened)}`);
    check(result.opened.elements < n, `${result.opened.elements} elements in the page for ${n} symbols`);
    await page.keyboard.press("Escape");
    // The search finds one far down the list by a partial lower-case query and shows it.
    const symbols = await page.evaluate(() => window.tradeflow.symbols);
    const target = symbols[symbols.length - 3];
    result.search = await search(page, partOf(target), target, "keys");
    result.picked = await chart();
    result.status = await status(page);
    live(result.status, "after the search");
    check(result.status.text.includes(`${total} symbols`), `the status does not count the symbols: ${result.status.text}`);
    result.axes = await axes(page);
    fits(result.axes, "live data");
    await staleStatus();
    // The screenshot: the search open on a broad query.
    await page.fill("#symbol", partOf(target).slice(0, 2));
    await page.waitForFunction(() => document.querySelectorAll("#symbol-list [role=option]").length > 0, null, { timeout: WAIT });
    await page.screenshot({ path: screenshot });
  } else {
    // It fills: windows on the chart, rows in the anomaly table.
    await page.waitForFunction((n) => Number(document.querySelector("#price-chart").dataset.points) >= n, POINTS, {
      timeout: Math.max(WAIT, POINTS * 1500),
    });
    await page.waitForFunction(() => document.querySelectorAll("#anomalies tbody tr").length >= 1, null, { timeout: WAIT });
    result.first = await chart();
    result.firstAnomalies = await table();
    // The status line says what is shown.
    result.firstStatus = await status(page);
    live(result.firstStatus, "with the first windows");

    // The value axes' labels fit, on the run's data, and on volumes in the billions and
    // prices in the hundred thousands moving by cents (measured in one microtask after
    // the data is set, so no pushed update redraws in between).
    result.axes = await axes(page);
    fits(result.axes, "live data");
    result.bigAxes = await page.evaluate(async () => {
      const { price, volume } = window.tradeflow.charts;
      const xs = volume.data[0];
      const none = xs.map(() => null);
      volume.setData([xs, xs.map((_, i) => (12_345_678_901 * (i + 1)) / xs.length), none]);
      const prices = xs.map((_, i) => 123_456.7 + (i % 7) / 100);
      price.setData([xs, prices, prices, none]);
      await Promise.resolve();
      return window.__axes();
    });
    fits(result.bigAxes, "volumes up to 12.3 billion, prices of 123,456.7x");
    check(
      result.bigAxes.volume.labels.every((l) => /^-?\d+(\.\d+)?[kMBT]?$/.test(l)) && result.bigAxes.volume.labels.some((l) => l.endsWith("B")),
      `volume labels are not compact: ${result.bigAxes.volume.labels}`,
    );
    result.labels = await page.evaluate(() => [
      window.tradeflow.axisLabels([0, 1.5e9, 3e9, 4.5e9], 1.5e9),
      window.tradeflow.axisLabels([0, 4e5, 8e5, 1.2e6], 4e5),
      window.tradeflow.axisLabels([1.0845, 1.085, 1.0855], 0.0005),
    ]);
    check(
      JSON.stringify(result.labels) === JSON.stringify([["0", "1.5B", "3B", "4.5B"], ["0", "400k", "800k", "1.2M"], ["1.0845", "1.0850", "1.0855"]]),
      `axis labels: ${JSON.stringify(result.labels)}`,
    );

    // It updates: newer windows, more pushed updates, a changed anomaly table.
    const first = result.first;
    await page.waitForFunction(
      ([last, updates]) =>
        Number(document.querySelector("#price-chart").dataset.last) > last && window.tradeflow.updates >= updates + 5,
      [first.last, first.updates],
      { timeout: WAIT },
    );
    const before = JSON.stringify(result.firstAnomalies);
    await page.waitForFunction(
      (text) =>
        JSON.stringify([...document.querySelectorAll("#anomalies tbody tr")].map((r) => r.innerText.replace(/\s+/g, " ").trim())) !== text,
      before,
      { timeout: WAIT },
    );
    result.later = await chart();
    result.laterAnomalies = await table();
    result.health = await health();
    result.sinks = await page.$$eval("#sinks tbody tr", (rows) => rows.map((r) => r.innerText.replace(/\s+/g, " ").trim()));
    result.status = await status(page);
    live(result.status, "later");

    // The screenshot: the first symbol, filled.
    await page.screenshot({ path: screenshot });

    // The symbol search: a partial lower-case query finds another symbol, a click shows
    // it; then the first one again, with the arrow keys and Enter. The charts redraw.
    const other = result.later.symbols.find((s) => s !== result.later.symbol);
    if (other) {
      result.search = await search(page, partOf(other), other, "click");
      result.picked = await chart();
      const query = broadPartOf(result.later.symbol, result.later.symbols);
      result.keyboard = await search(page, query, result.later.symbol, "keys");
      result.pickedAgain = await chart();
      check(result.pickedAgain.symbol === result.later.symbol, `back to ${result.later.symbol}: ${JSON.stringify(result.pickedAgain)}`);
      result.pickedStatus = await status(page);
      live(result.pickedStatus, "after the search");
    }

    // The range picker: the last 10 windows only, then everything kept again.
    await page.waitForFunction((n) => Number(document.querySelector("#price-chart").dataset.points) > n, 10, { timeout: WAIT });
    await page.selectOption("#range", "10");
    await page.waitForFunction(() => Number(document.querySelector("#price-chart").dataset.points) === 10, null, { timeout: WAIT });
    result.ranged = await chart();
    await page.selectOption("#range", "0");
    await page.waitForFunction(() => Number(document.querySelector("#price-chart").dataset.points) > 10, null, { timeout: WAIT });
    result.unranged = await chart();
    await staleStatus();
  }
  result.external = external;
} catch (e) {
  failure = e;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
if (failure) {
  console.error(`dashboard check failed: ${failure.message}`);
  process.exit(1);
}
