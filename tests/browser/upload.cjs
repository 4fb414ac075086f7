// End-to-end run of the demo in headless Chromium (driven by playwright-core, no downloaded browser).
// usage: node upload.cjs URL SHOTS_DIR IMAGE...
// Opens the app, uploads the IMAGEs in the Likelihood tab, presses "Compute bits/dim", waits for a table row per
// image and prints one JSON line: {rows: {name: [cells of its row]}, maps: number of bits maps shown,
// offsite: [requests that left the app's host]}. Screenshots of the three tabs go to SHOTS_DIR (failure.png when a
// step fails).
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
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
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
    await page.waitForFunction((ns) => ns.every((n) => n in window.resultRows()), names, { timeout: 240000 });
    const rows = await page.evaluate(() => window.resultRows());
    await page.waitForFunction(
      (k) => document.querySelectorAll("#bits-map img").length >= k, names.length, { timeout: 60000 });
    const maps = await page.locator("#bits-map img").count();
    await page.waitForTimeout(1000);
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
    await page.screenshot({ path: `${shots}/models.png`, fullPage: true });
    console.log(JSON.stringify({ rows, maps, offsite }));
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
