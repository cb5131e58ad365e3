// Opens a `tradeflow report` HTML file in Debian's headless Chromium (driven by
// playwright-core; no browser download) with the network off, and reports what it drew:
// for each chart, its size on the page and its marks (bars, lines, dots) with their
// sizes; the page's text; console errors, page errors and every request other than the
// file itself (there must be none). Saves a screenshot.
//
//   node report.mjs /abs/report-2024-03-05.html /tmp/report.png
//
// Prints one JSON object on stdout; exits 1 (with the reason on stderr) when the page
// cannot be loaded.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [file, screenshot] = process.argv.slice(2);
if (!file || !screenshot) {
  console.error("usage: node report.mjs REPORT.html SCREENSHOT.png");
  process.exit(2);
}
const url = pathToFileURL(file).href;

const profile = mkdtempSync(join(tmpdir(), "tradeflow-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  offline: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
  ],
  viewport: { width: 1280, height: 900 },
});
const result = { errors: [], requests: [], failedRequests: [] };
let failure = null;
try {
  // Every request but the report itself is recorded and refused.
  await context.route("**/*", (route) => {
    const requested = route.request().url();
    if (requested === url) return route.continue();
    result.requests.push(requested);
    return route.abort();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => result.errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && result.errors.push(m.text()));
  page.on("requestfailed", (r) => result.failedRequests.push(r.url()));
  await page.goto(url, { waitUntil: "load" });

  result.title = await page.title();
  result.charts = await page.evaluate(() => {
    const size = (el) => {
      const r = el.getBoundingClientRect();
      return [Math.round(r.width), Math.round(r.height)];
    };
    const box = (el) => {
      const b = el.getBBox();
      return [b.width, b.height];
    };
    return [...document.querySelectorAll("svg.chart")].map((svg) => ({
      id: svg.id || null,
      cls: svg.getAttribute("class"),
      label: svg.getAttribute("aria-label"),
      size: size(svg),
      // Bars: rects of a bar group, with their drawn sizes.
      bars: [...svg.querySelectorAll("g.bar rect:first-of-type")].map(box),
      paths: [...svg.querySelectorAll("path.line")].map((p) => ({
        points: (p.getAttribute("d") || "").split(/[ML]/).filter((s) => s.trim()).length,
        length: p.getTotalLength(),
        box: box(p),
      })),
      dots: svg.querySelectorAll("circle.mark").length,
      titles: [...svg.querySelectorAll("title")].map((t) => t.textContent),
    }));
  });
  result.text = await page.evaluate(() => document.body.innerText);
  result.cards = await page.$$eval(".card[data-key]", (cards) =>
    Object.fromEntries(cards.map((c) => [c.dataset.key, c.querySelector("b").textContent])),
  );
  result.tables = await page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll("table[id]")].map((t) => [
        t.id,
        [...t.querySelectorAll("tbody tr")].map((r) => [...r.cells].map((c) => c.textContent)),
      ]),
    ),
  );
  // Markup injected through the data would show up as elements: there must be none.
  result.injected = await page.evaluate(() => document.querySelectorAll("main b:not(.card b), script, iframe, img").length);
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (e) {
  failure = e;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (failure) {
  console.error(String(failure && failure.stack ? failure.stack : failure));
  process.exit(1);
}
console.log(JSON.stringify(result));
