// The console in a real browser (Debian's headless Chromium, driven by playwright-core) against a fleet
// the Rust test `tests/tests/console.rs` started: it passes the fleet's URL and where screenshots go.
// Every step checks what a user sees; a failed step exits non-zero with what was on the page.
"use strict";

const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

const [base, shots] = process.argv.slice(2);
const BIG = process.env.ALOFT_CONSOLE_BIG_EXECUTION || "";
// `aloft-bench console` runs only the 10,000-item map's step, on a release build.
const ONLY_BIG = process.env.ALOFT_CONSOLE_ONLY_BIG === "1";
fs.mkdirSync(shots, { recursive: true });

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.ALOFT_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  const step = async (name, run) => {
    if (ONLY_BIG && !name.startsWith("09-")) return;
    try {
      await run();
      await shot(name);
      console.log(`ok   ${name}`);
    } catch (error) {
      await shot(`${name}-failed`).catch(() => {});
      console.log(`FAIL ${name}: ${error.message}\n--- page text ---\n${await page.innerText("body").catch(() => "")}`);
      throw error;
    }
  };
  const expectText = async (locator, text, timeout = 30000) => {
    await locator.filter({ hasText: text }).first().waitFor({ timeout });
  };

  let diamond = "";
  await step("01-launch-form-refuses-a-bad-input", async () => {
    await page.goto(`${base}/console/launch/default/development/diamond`);
    await page.getByLabel("x (integer)").fill("three");
    await page.getByRole("button", { name: "Launch" }).click();
    // The server's own message, at the field it names.
    await expectText(page.locator("#input-x-error"), "input x");
  });

  await step("02-launch-the-diamond-and-watch-it-succeed", async () => {
    await page.getByLabel("x (integer)").fill("3");
    await page.getByLabel("Labels (key=value, space separated)").fill("team=console");
    await page.getByRole("button", { name: "Launch" }).click();
    await page.waitForURL(/\/console\/executions\/default\/development\/a[a-z0-9]+/);
    diamond = page.url().split("/").pop().split("?")[0];
    // The page follows the run live (server-sent events) until it ends.
    await expectText(page.locator("h1"), "SUCCEEDED", 60000);
    await expectText(page.locator("[data-output=result]"), "24");
  });

  await step("03-open-a-node-read-its-outputs-and-log", async () => {
    await page.locator('svg.graph g.node[data-node="d"]').click();
    await expectText(page.locator("aside.detail h2").first(), "d");
    await expectText(page.locator('aside.detail [data-output="sum"]'), "24");
    // What the node was given: its bindings resolved (b = double(4) = 8, c = square(4) = 16).
    await expectText(page.locator('aside.detail [data-inputs="d"] [data-output="a"]'), "8");
    await expectText(page.locator('aside.detail [data-inputs="d"] [data-output="b"]'), "16");
    await page.locator('svg.graph g.node[data-node="a"]').click();
    await page.locator('[data-log="a"]').waitFor();
    await page.waitForFunction(() => !document.querySelector('[data-log="a"]').textContent.startsWith("Loading"));
  });

  await step("04-history-steps-back-to-an-earlier-event", async () => {
    await page.getByRole("tab", { name: "History" }).click();
    await page.locator('ol.history button[data-index="1"]').click();
    await expectText(page.locator(".banner"), "right after event 1");
    await expectText(page.locator("h1"), "QUEUED");
    const phase = await page.locator('svg.graph g.node[data-node="d"]').getAttribute("aria-label");
    if (!phase.includes("PENDING")) throw new Error(`node d right after the request: ${phase}`);
  });

  await step("05-relaunch-with-a-changed-input", async () => {
    await page.getByRole("link", { name: "Back to now" }).click();
    await page.getByRole("button", { name: "Relaunch…" }).click();
    await page.locator("#input-x").fill("10");
    await page.getByRole("button", { name: "Relaunch", exact: true }).click();
    await page.waitForURL((url) => !url.pathname.endsWith(`/${diamond}`));
    await expectText(page.locator("h1"), "SUCCEEDED", 60000);
    // (10+1)*2 + (10+1)^2 = 143
    await expectText(page.locator("[data-output=result]"), "143");
  });

  await step("06-signal-and-approve-a-waiting-gate", async () => {
    await page.goto(`${base}/console/launch/default/staging/release`);
    await page.getByLabel("x (integer)").fill("3");
    await page.getByRole("button", { name: "Launch" }).click();
    await page.waitForURL(/executions\/default\/staging\/a/);
    await page.locator("#signal-name").fill("bump");
    await page.locator("#signal-value").fill("5");
    await page.getByRole("button", { name: "Send signal" }).click();
    const review = 'svg.graph g.node[data-node="review"]';
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute("aria-label").includes("RUNNING"), review, { timeout: 60000 });
    await page.locator(review).click();
    await page.getByRole("button", { name: "Approve" }).click();
    await expectText(page.locator("h1"), "SUCCEEDED", 60000);
    // small: inc(inc(3)) = 5, plus the signal's 5.
    await expectText(page.locator("[data-output=result]"), "10");
  });

  await step("07-filter-the-list-by-label-and-phase", async () => {
    await page.goto(`${base}/console/executions`);
    await page.getByLabel("Label (key=value)").fill("team=console");
    await page.getByLabel("Phase").selectOption("SUCCEEDED");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/label=team%3Dconsole/);
    await page.locator(`tr[data-execution="${diamond}"]`).waitFor();
    const rows = await page.locator("tbody tr[data-execution]").count();
    // The diamond and its relaunch (a relaunch keeps the labels), not the release run.
    if (rows !== 2) throw new Error(`${rows} rows match team=console and SUCCEEDED`);
  });

  await step("08-unknown-execution-is-a-clear-not-found", async () => {
    await page.goto(`${base}/console/executions/default/development/no-such-run`);
    await expectText(page.locator("h1"), "Not found");
    await expectText(page.locator("[role=alert]"), "no-such-run");
  });

  const TALKING = process.env.ALOFT_CONSOLE_TALKING_EXECUTION || "";
  if (TALKING) {
    await step("11-follow-a-running-tasks-log-live", async () => {
      await page.goto(`${base}/console/executions/default/development/${TALKING}?node=talk`);
      await expectText(page.locator('[data-log="talk"]'), "first-line");
      // Printed 3 s after the first, while the page stays open: it arrives through the followed stream.
      await expectText(page.locator('[data-log="talk"]'), "second-line", 20000);
      await page.getByRole("button", { name: "Terminate" }).click();
      await expectText(page.locator("h1"), "ABORTED", 30000);
    });
  }

  await step("12-an-entity-page-shows-the-interface-graph-and-schedule", async () => {
    await page.goto(`${base}/console/workflows`);
    await page.getByRole("table", { name: "Workflows" }).getByRole("link", { name: "diamond", exact: true }).click();
    await expectText(page.locator("h1"), "diamond@");
    await expectText(page.getByRole("table", { name: "Interface" }).locator("tr"), "integer");
    await page.locator('section[aria-label="Graph preview"] g.node[data-node="d"]').waitFor();
    await expectText(page.locator('pre[aria-label="Spec"]'), "increment");
    await page.goto(`${base}/console/workflows`);
    await page.getByRole("table", { name: "Launch plans" }).getByRole("link", { name: "every-minute-report" }).click();
    await page.locator('[data-state="inactive"]').waitFor();
    await page.getByRole("button", { name: "Activate" }).click();
    await page.locator('[data-state="active"]').waitFor();
    const next = await page.locator("[data-next-fire]").innerText();
    if (next === "—") throw new Error("an active schedule shows no next fire time");
    await page.getByRole("button", { name: "Deactivate" }).click();
    await page.locator('[data-state="inactive"]').waitFor();
    if ((await page.locator("[data-next-fire]").innerText()) !== "—") throw new Error("an inactive schedule shows a next fire time");
  });

  const NOTIFIED = process.env.ALOFT_CONSOLE_NOTIFIED_EXECUTION || "";
  if (NOTIFIED) {
    await step("13-notification-deliveries-and-their-attempts", async () => {
      // The notifier posts the webhook after the execution ends: reload until it is recorded.
      for (let tries = 0; ; tries++) {
        await page.goto(`${base}/console/deliveries`);
        if (await page.locator("[data-delivery-kind]").count()) break;
        if (tries > 30) throw new Error("no delivery listed after 30 s");
        await page.waitForTimeout(1000);
      }
      await expectText(page.getByRole("table", { name: "Deliveries" }).locator("tr"), NOTIFIED);
      await expectText(page.locator("[data-delivery-kind]"), "DeliveryDelivered");
    });
  }

  await step("14-tenants-with-their-quotas-and-the-pools", async () => {
    await page.goto(`${base}/console/tenants`);
    const tenant = page.locator('tr[data-tenant="default/development"]');
    await expectText(tenant.locator("[data-weight]"), "3");
    await expectText(tenant.locator("[data-max-running]"), "7");
    // hold-1 runs and holds one of the two gpus tokens.
    await expectText(page.locator('tr[data-pool="gpus"] [data-held]'), "1");
    const running = Number(await tenant.locator("[data-running]").innerText());
    if (!(running >= 1)) throw new Error(`default/development shows ${running} running attempts`);
  });

  const WIDE = process.env.ALOFT_CONSOLE_WIDE_EXECUTION || "";
  if (WIDE) {
    await step("15-a-graph-of-2000-nodes-stays-interactive", async () => {
      const started = Date.now();
      await page.goto(`${base}/console/executions/default/development/${WIDE}`);
      await page.locator('svg.graph g.node[data-node="n1999"]').waitFor();
      const drawn = Date.now() - started;
      const nodes = await page.locator("svg.graph g.node").count();
      if (nodes !== 2000) throw new Error(`${nodes} nodes drawn`);
      // Opening a node from the far corner of the graph answers at once.
      const clicked = Date.now();
      await page.locator('svg.graph g.node[data-node="n1999"]').click();
      await expectText(page.locator("aside.detail h2").first(), "n1999");
      await expectText(page.locator('aside.detail [data-inputs="n1999"]'), "No inputs");
      const opened = Date.now() - clicked;
      console.log(`bench console-2000-node-graph drawn-ms=${drawn} node-opened-ms=${opened}`);
    });
  }

  await step("16-a-launch-plan-form-prefills-defaults-and-fixes-its-fixed-inputs", async () => {
    await page.goto(`${base}/console/entities/plan/diamond-fixed`);
    await page.getByRole("link", { name: "Launch…" }).click();
    await expectText(page.locator("h1"), "Launch diamond-fixed@");
    const fixed = page.locator("#input-x");
    if (!(await fixed.isDisabled()) || (await fixed.inputValue()) !== "5") throw new Error("x is not shown fixed at 5");
    await page.getByRole("button", { name: "Launch" }).click();
    await page.waitForURL(/\/console\/executions\/default\/development\/a[a-z0-9]+/);
    await expectText(page.locator("h1"), "SUCCEEDED", 60000);
    // (5+1)*2 + (5+1)^2 = 48
    await expectText(page.locator("[data-output=result]"), "48");
  });

  const SHAPES = process.env.ALOFT_CONSOLE_SHAPES_EXECUTION || "";
  if (SHAPES) {
    await step("17-a-struct-is-a-tree-and-a-blob-and-an-offloaded-value-download", async () => {
      await page.goto(`${base}/console/executions/default/development/${SHAPES}`);
      const report = page.locator('section[aria-label="Execution"] [data-output="report"]');
      await expectText(report.locator("details.json summary").first(), "{1 fields}");
      await expectText(report.locator(".leaf"), "auc: 0.91");
      const [file] = await Promise.all([
        page.waitForEvent("download"),
        page.locator('section[aria-label="Execution"] button[data-download="data"]').click(),
      ]);
      const text = fs.readFileSync(await file.path(), "utf8");
      if (text.trim() !== "hello-blob") throw new Error(`downloaded ${JSON.stringify(text)}`);
      // A value too long to travel inline is shown by its size and downloads whole from the blob store.
      await expectText(page.locator('section[aria-label="Execution"] [data-output="long"]'),
        "(offloaded to the blob store, 100000 bytes)");
      const [long] = await Promise.all([
        page.waitForEvent("download"),
        page.locator('section[aria-label="Execution"] button[data-download="long"]').click(),
      ]);
      const longText = fs.readFileSync(await long.path(), "utf8");
      if (longText !== "x".repeat(100000)) throw new Error(`downloaded ${longText.length} characters`);
    });
  }

  const CACHED = process.env.ALOFT_CONSOLE_CACHED_EXECUTION || "";
  if (CACHED) {
    await step("10-cache-entries-lineage-and-eviction", async () => {
      await page.goto(`${base}/console/cache`);
      await expectText(page.getByRole("table", { name: "Cache entries" }).locator("td"), "slow-square");
      await page.getByRole("link", { name: `${CACHED} / square` }).click();
      // The node's output came from the execution's input n (through the catalog's lineage).
      await expectText(page.getByRole("list", { name: "Lineage edges" }).locator("li"), "inputs / n");
      await expectText(page.getByRole("list", { name: "Lineage edges" }).locator("li"), "plus-one");
      await page.goto(`${base}/console/cache`);
      await page.getByRole("button", { name: "Evict slow-square" }).click();
      await expectText(page.getByRole("status"), "Evicted 1 stored result");
      await expectText(page.locator("p"), "No stored results");
    });
  }

  if (BIG) {
    await step("09-scroll-the-nodes-of-a-10000-item-map", async () => {
      const started = Date.now();
      await page.goto(`${base}/console/executions/default/development/${BIG}?tab=nodes&parent=items`);
      await page.locator(".virtual .row").first().waitFor();
      const firstPaint = Date.now() - started;
      const total = await page.locator("[data-count]").getAttribute("data-count");
      if (Number(total) < 10000) throw new Error(`${total} nodes listed`);
      const viewport = page.locator(".virtual");
      await viewport.evaluate((el) => { el.scrollTop = el.scrollHeight; });
      await page.locator('.virtual .row[data-node="items[9999]"]').waitFor({ timeout: 30000 });
      const rendered = await page.locator(".virtual .row").count();
      if (rendered > 200) throw new Error(`${rendered} rows in the DOM: not virtualized`);
      const memory = await page.evaluate(() => performance.memory ? performance.memory.usedJSHeapSize : 0);
      console.log(`bench console-10k-map first-paint-ms=${firstPaint} js-heap-bytes=${memory}`);
      // The graph tab draws the map as one node with its items' counts: the items never travel.
      const graphStarted = Date.now();
      const items = new Set();
      page.on("request", (request) => { if (request.url().includes("/nodes")) items.add(request.url()); });
      await page.goto(`${base}/console/executions/default/development/${BIG}?tab=graph`);
      const map = page.locator('svg.graph g.node[data-node="items"]');
      await map.waitFor();
      const label = await map.getAttribute("aria-label");
      const shown = await map.innerHTML();
      if (!/10000 succeeded/i.test(shown)) throw new Error(`the map node shows ${shown} (${label})`);
      const drawn = Date.now() - graphStarted;
      const graphHeap = await page.evaluate(() => performance.memory ? performance.memory.usedJSHeapSize : 0);
      if (![...items].every((url) => url.includes("top_level=true"))) throw new Error(`the graph fetched ${[...items]}`);
      console.log(`bench console-10k-map-graph drawn-ms=${drawn} js-heap-bytes=${graphHeap}`);
    });
  }

  if (errors.length) throw new Error(`errors in the page: ${errors.join("; ")}`);
  await browser.close();
}

main().catch((error) => {
  console.error(error.stack || error.message);
  process.exit(1);
});
