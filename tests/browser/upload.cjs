// End-to-end run of the demo in headless Chromium (driven by playwright-core, no downloaded browser).
// usage: node upload.cjs URL IMAGE SHOTS_DIR
// Opens the app, uploads IMAGE in the Likelihood tab, presses "Compute bits/dim", waits for the table and
// prints one JSON line: {row: [cells of the first result row], offsite: [requests that left the app's host]}.
// Screenshots of the three tabs go to SHOTS_DIR (failure.png when a step fails).
const { chromium } = require("playwright-core");

const [url, image, shots] = process.argv.slice(2);
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
    await page.goto(url, { waitUntil: "domcontentloaded" });
    await page.getByRole("tab", { name: "Likelihood" }).click();
    await page.locator("#upload input[type=file]").setInputFiles(image);
    // the upload is done when the file's name is listed in the File component
    const name = image.split("/").pop();
    await page.waitForFunction(
      (n) => (document.querySelector("#upload")?.innerText || "").replace(/\s/g, "").includes(n), name,
      { timeout: 60000 });
    await page.locator("#bpd-button").click();
    // Gradio 6 renders the cells' text outside innerText and adds empty helper cells: read textContent
    await page.waitForFunction(
      (n) => [...document.querySelectorAll("#bpd-table tbody tr")].some((r) => r.textContent.includes(n)), name,
      { timeout: 120000 });
    const row = (await page.locator("#bpd-table tbody tr").filter({ hasText: name }).first().locator("td")
      .allTextContents())
      .map((s) => s.trim()).filter((s) => s.length > 0);
    await page.waitForTimeout(500);
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
    console.log(JSON.stringify({ row, offsite }));
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
