// End-to-end run of the demo in headless Chromium (driven by playwright-core, no downloaded browser).
// usage: node upload.cjs URL SHOTS_DIR IMAGE...
// Opens the app in a 1400×900 window, uploads the IMAGEs in the Likelihood tab, presses "Compute bits/dim", watches
// the progress until a table row per image is there, and prints one JSON line:
// {rows: {name: [cells of its row]}, maps: number of bits maps shown, mapWidths: [shown width of each, px],
//  progress: {bars: most progress bars shown at once, levels: [each progress text seen]},
//  cut: {table: [columns of the results table past its right edge], zoo: [those of the Models table]},
//  scrolls: {table, maps, zoo: [boxes of their own that scroll]}, zooRows: rows of the Models table shown,
//  offsite: [requests that left the app's host]}.
// Screenshots of the three tabs go to SHOTS_DIR, one of the Likelihood tab while it works (failure.png when a step
// fails).
const { chromium } = require("playwright-core");

const [url, shots, ...images] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  try {
    const offsite = [];
    const host = new URL(url).host;
    page.on("request", (r) => {
      const u = r.url();
      if (/^https?:/.test(u) && new URL(u).host !== host) offsite.push(u);
    });
    // Gradio 6 draws the table as a grid of divs (role=row with role=gridcell, one row per result) beside a hidden
    // table it measures: the results are the grid's cells, by file name
    await page.addInitScript(() => {
      window.resultRows = () => Object.fromEntries([...document.querySelectorAll("#bpd-table [role=row]")]
        .map((r) => [...r.querySelectorAll("[role=gridcell]")].map((c) => c.textContent.trim()))
        .filter((cells) => cells.length > 0).map((cells) => [cells[0], cells]));
      // what a person cannot see without scrolling inside a box: boxes of their own that scroll, and table columns
      // whose right edge lies past the table's
      const scrolling = (e) => (["auto", "scroll"].includes(getComputedStyle(e).overflowY) &&
        e.scrollHeight > e.clientHeight + 1) || (["auto", "scroll"].includes(getComputedStyle(e).overflowX) &&
        e.scrollWidth > e.clientWidth + 1);
      window.scrollBoxes = (sel) => [...document.querySelectorAll(`${sel} *`)].filter(scrolling)
        .map((e) => e.className);
      window.cutColumns = (sel) => {
        const right = document.querySelector(`${sel} .table-container`).getBoundingClientRect().right;
        return [...document.querySelectorAll(`${sel} [role=columnheader]`)]
          .filter((h) => h.getBoundingClientRect().right > right + 1).map((h) => h.textContent.trim());
      };
      window.progressNow = () => [...document.querySelectorAll(".progress-text")].length;
      window.progressLevels = () => [...document.querySelectorAll(".progress-level")]
        .map((e) => e.textContent.trim().replace(/\s+/g, " "));
    });
    await page.goto(url, { waitUntil: "domcontentloaded" });
    await page.getByRole("tab", { name: "Likelihood" }).click();
    await page.locator("#upload input[type=file]").setInputFiles(images);
    // the upload is done when every file's name is listed in the File component
    const names = images.map((p) => p.split("/").pop());
    await page.waitForFunction(
      (ns) => ns.every((n) => (document.querySelector("#upload")?.innerText || "").replace(/\s/g, "").includes(n)),
      names, { timeout: 60000 });
    await page.locator("#bpd-button").click();
    // the progress as a person sees it, every 100 ms until the results are in
    const progress = { bars: 0, levels: [] };
    const start = Date.now();
    let shot = false;
    while (!(await page.evaluate((ns) => ns.every((n) => n in window.resultRows()), names))) {
      if (Date.now() - start > 240000) throw new Error("no results after 240 s");
      const [bars, levels] = await page.evaluate(() => [window.progressNow(), window.progressLevels()]);
      progress.bars = Math.max(progress.bars, bars);
      for (const l of levels) if (!progress.levels.includes(l)) progress.levels.push(l);
      if (!shot && levels.some((l) => /bits\/dim - [1-9]/.test(l))) {
        await page.screenshot({ path: `${shots}/progress.png` });
        shot = true;
      }
      await page.waitForTimeout(100);
    }
    const rows = await page.evaluate(() => window.resultRows());
    await page.waitForFunction(
      (k) => document.querySelectorAll("#bits-map img").length >= k, names.length, { timeout: 60000 });
    const maps = await page.locator("#bits-map img").count();
    await page.waitForTimeout(1000);
    const mapWidths = await page.evaluate(() => [...document.querySelectorAll("#bits-map img")]
      .map((i) => Math.round(i.getBoundingClientRect().width)));
    const cut = { table: await page.evaluate(() => window.cutColumns("#bpd-table")) };
    const scrolls = await page.evaluate(() => ({ table: window.scrollBoxes("#bpd-table"),
                                                 maps: window.scrollBoxes("#bits-map") }));
    await page.screenshot({ path: `${shots}/likelihood.png`, fullPage: true });

    await page.getByRole("tab", { name: "Sample" }).click();
    await page.locator("#steps input[type=number]").fill("5");  // 5 RK4 steps: an untrained net is slow adaptively
    await page.locator("#steps input[type=number]").press("Enter");
    await page.getByRole("button", { name: "Sample", exact: true }).click();
    await page.getByText(/\d+ samples from/).waitFor({ timeout: 120000 });
    await page.waitForTimeout(500);
    await page.screenshot({ path: `${shots}/sample.png`, fullPage: true });

    await page.getByRole("tab", { name: "Models" }).click();
    await page.waitForTimeout(500);
    cut.zoo = await page.evaluate(() => window.cutColumns("#zoo"));
    scrolls.zoo = await page.evaluate(() => window.scrollBoxes("#zoo"));
    const zooRows = await page.evaluate(() => [...document.querySelectorAll("#zoo [role=row]")]
      .filter((r) => r.querySelector("[role=gridcell]")).length);
    await page.screenshot({ path: `${shots}/models.png`, fullPage: true });
    console.log(JSON.stringify({ rows, maps, mapWidths, progress, cut, scrolls, zooRows, offsite }));
  } catch (e) {
    await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(1);
});
