// Loads tradeflow's live dashboard in Debian's headless Chromium (driven by
// playwright-core; no browser download) and checks that it fills and then updates:
// the price chart gets windows and then newer ones, the anomaly table gets rows and
// then changes, the health panel shows throughput, and picking another symbol redraws
// the charts for it. Saves a screenshot.
//
//   node dashboard.mjs http://127.0.0.1:8501/ /tmp/dashboard.png
//
// Prints one JSON object with what it saw on stdout; exits 1 (with the reason on
// stderr) when a check fails. CHROMIUM overrides /usr/bin/chromium; DASHBOARD_POINTS
// (default 3) is how many windows the chart must show before the checks start (more
// for a fuller screenshot, as for the README's docs/dashboard.png).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node dashboard.mjs URL SCREENSHOT.png");
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
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => result.errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && result.errors.push(m.text()));
  const external = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(new URL(url).origin)) external.push(r.url());
  });
  await page.goto(url);

  const chart = () =>
    page.evaluate(() => {
      const el = document.querySelector("#price-chart");
      const canvas = el.querySelector("canvas");
      return {
        points: Number(el.dataset.points || 0),
        last: Number(el.dataset.last || 0),
        volumePoints: Number(document.querySelector("#volume-chart").dataset.points || 0),
        canvas: canvas ? [canvas.width, canvas.height] : null,
        updates: window.tradeflow.updates,
        symbol: window.tradeflow.symbol,
        symbols: window.tradeflow.symbols,
        title: document.querySelector("#price-title").textContent,
      };
    });
  const table = () => page.$$eval("#anomalies tbody tr", (rows) => rows.map((r) => r.innerText.replace(/\s+/g, " ").trim()));
  const health = () =>
    page.$$eval("#health tr", (rows) => Object.fromEntries(rows.map((r) => [r.dataset.key, r.cells[1].textContent])));

  // It fills: windows on the chart, rows in the anomaly table.
  await page.waitForFunction((n) => Number(document.querySelector("#price-chart").dataset.points) >= n, POINTS, {
    timeout: Math.max(WAIT, POINTS * 1500),
  });
  await page.waitForFunction(() => document.querySelectorAll("#anomalies tbody tr").length >= 1, null, { timeout: WAIT });
  result.first = await chart();
  result.firstAnomalies = await table();

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

  // The screenshot: the first symbol, filled.
  await page.screenshot({ path: screenshot });

  // Another symbol: the charts redraw for it.
  const other = result.later.symbols.find((s) => s !== result.later.symbol);
  if (other) {
    await page.selectOption("#symbol", other);
    await page.waitForFunction(
      (s) => window.tradeflow.symbol === s && Number(document.querySelector("#price-chart").dataset.points) >= 1,
      other,
      { timeout: WAIT },
    );
    result.picked = await chart();
  }

  // The range picker: the last 10 windows only, then everything kept again.
  await page.waitForFunction((n) => Number(document.querySelector("#price-chart").dataset.points) > n, 10, { timeout: WAIT });
  await page.selectOption("#range", "10");
  await page.waitForFunction(() => Number(document.querySelector("#price-chart").dataset.points) === 10, null, { timeout: WAIT });
  result.ranged = await chart();
  await page.selectOption("#range", "0");
  await page.waitForFunction(() => Number(document.querySelector("#price-chart").dataset.points) > 10, null, { timeout: WAIT });
  result.unranged = await chart();
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
