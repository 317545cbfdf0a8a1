// The console's login in a real browser: authentication is on, so the console sends the user to the
// identity provider (the Rust test's issuer, which logs `lena` in at once), back with a code it trades for a
// token (PKCE), and then shows the executions `lena` may see; logging out asks again.
"use strict";

const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

const [base, shots] = process.argv.slice(2);
fs.mkdirSync(shots, { recursive: true });

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.ALOFT_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const step = async (name, run) => {
    try {
      await run();
      await page.screenshot({ path: path.join(shots, `login-${name}.png`), fullPage: true });
      console.log(`ok   ${name}`);
    } catch (error) {
      console.log(`FAIL ${name}: ${error.message}\n--- page text ---\n${await page.innerText("body").catch(() => "")}`);
      throw error;
    }
  };
  await step("01-asks-to-log-in", async () => {
    await page.goto(`${base}/console/executions`);
    await page.getByRole("heading", { name: "Log in" }).waitFor({ timeout: 30000 });
  });
  await step("02-comes-back-logged-in", async () => {
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("link", { name: "seen-after-login" }).waitFor({ timeout: 30000 });
    await page.locator("#user").filter({ hasText: "lena" }).waitFor({ timeout: 10000 });
    if (!page.url().startsWith(`${base}/console/executions`)) throw new Error(`back at ${page.url()}, not the page asked for`);
  });
  await step("02-shows-who-launched-and-who-caused-each-event", async () => {
    await page.getByRole("link", { name: "seen-after-login" }).click();
    await page.getByText("(root, oidc)").first().waitFor({ timeout: 15000 });
    await page.getByRole("tab", { name: "History" }).click();
    await page.getByRole("button", { name: /ExecutionRequested .* by root@example\.com/ }).waitFor({ timeout: 15000 });
  });
  await step("03-logs-out", async () => {
    await page.getByRole("link", { name: "Log out" }).click();
    await page.getByRole("heading", { name: "Log in" }).waitFor({ timeout: 10000 });
  });
  if (errors.length) throw new Error(`errors in the page: ${errors.join("; ")}`);
  await browser.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
