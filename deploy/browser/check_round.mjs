// What a round's annotator and reviewer see in Label Studio, in headless Chromium at 1400x900, as a person:
// the project opens on the round tab; the round tab hides the internal columns; in the labeling screen the image
// renders and every choice is inside the viewport without scrolling; the labeling stream shows the instructions;
// the review tab shows the reasons and the aggregated label with its confidence. Exits non-zero on any problem.
// Usage: node check_round.mjs '<json from check_round_ui.py>'
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2]);
const VIEWPORT = { width: 1400, height: 900 };
const browser = await chromium.launch({
  executablePath: cfg.chromium || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const problems = [];
const result = { viewport: VIEWPORT };
const shot = async (page, name) => {
  if (cfg.screenshots) await page.screenshot({ path: `${cfg.screenshots}/${name}.png` });
};

// Column ids (data-id, e.g. "tasks:data.caption") and header texts of the Data Manager table.
// `right`: where the header ends on the page (a column past the viewport's width needs sideways scrolling).
const headers = (page) =>
  page.$$eval("span.lsf-th[data-id]", (ths) =>
    ths.map((th) => ({
      id: th.dataset.id,
      text: th.innerText.trim().split("\n")[0],
      right: Math.round(th.getBoundingClientRect().right),
    })),
  );
const selectedTab = (page) =>
  page.$eval("[role=tab][aria-selected=true]", (t) => t.getAttribute("aria-label") || t.innerText.trim());

// The labeling screen once the image has rendered: the image's box and size, each choice's box.
async function measureLabeling(page, where) {
  const image = await page.waitForFunction(
    () =>
      // The Image tag's own <img> (the Data Manager's thumbnails are other <img>s).
      [...document.querySelectorAll(".lsf-image img")].find(
        (i) => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().height > 0,
      ) || false,
    null,
    { timeout: 90000 },
  );
  await page.waitForSelector(".lsf-choice", { timeout: 30000 });
  await page.waitForTimeout(1000); // let the layout settle after the image's load
  const m = await page.evaluate((img) => {
    const box = (el) => {
      const r = el.getBoundingClientRect();
      return { x: Math.round(r.x), y: Math.round(r.y), right: Math.round(r.right), bottom: Math.round(r.bottom) };
    };
    const choices = [...document.querySelectorAll(".lsf-choice")].map((c) => ({
      label: c.innerText.replace(/\[\d+\]/, "").trim(),
      ...box(c),
    }));
    const scroller = [...document.querySelectorAll("*")].filter(
      (el) => el.scrollHeight > el.clientHeight + 1 && /(auto|scroll)/.test(getComputedStyle(el).overflowY),
    );
    return {
      image: { naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, ...box(img) },
      choices,
      windowScrollY: window.scrollY,
      pageHeight: document.documentElement.scrollHeight,
      scrolledContainers: scroller.filter((el) => el.scrollTop > 0).length,
    };
  }, image);
  for (const c of m.choices) {
    if (c.y < 0 || c.x < 0 || c.bottom > VIEWPORT.height || c.right > VIEWPORT.width)
      problems.push(`${where}: choice ${c.label} at ${JSON.stringify(c)} is outside the ${VIEWPORT.width}x${VIEWPORT.height} viewport`);
  }
  const seen = m.choices.map((c) => c.label).sort();
  if (JSON.stringify(seen) !== JSON.stringify([...cfg.labels].sort()))
    problems.push(`${where}: choices ${seen}, not ${cfg.labels}`);
  if (m.windowScrollY !== 0 || m.scrolledContainers) problems.push(`${where}: the page was scrolled`);
  if (m.image.naturalWidth === 0) problems.push(`${where}: the image did not render`);
  if (await page.locator("text=There was an issue loading URL").count())
    problems.push(`${where}: Label Studio shows 'There was an issue loading URL'`);
  return m;
}

try {
  const page = await browser.newPage({ viewport: VIEWPORT });
  page.on("response", (r) => {
    if (r.url().includes("/data/local-files/") && r.status() !== 200) problems.push(`image ${r.status()}: ${r.url()}`);
  });

  await page.goto(`${cfg.labelStudio}/user/login/`);
  await page.fill("input[name=email]", cfg.user);
  await page.fill("input[name=password]", cfg.password);
  await Promise.all([
    page.waitForURL((u) => !u.pathname.startsWith("/user/login"), { timeout: 60000 }),
    page.press("input[name=password]", "Enter"),
  ]);

  // 1. The project's plain URL (no tab id) opens on the round tab.
  await page.goto(`${cfg.labelStudio}${cfg.projectPath}`);
  await page.waitForSelector("span.lsf-th[data-id]", { timeout: 60000 });
  await page.waitForTimeout(1000);
  const tabs = await page.$$eval("[role=tab]", (ts) => ts.map((t) => t.getAttribute("aria-label") || t.innerText.trim()));
  result.projectOpens = { url: page.url(), selectedTab: await selectedTab(page), tabs };
  if (result.projectOpens.selectedTab !== cfg.roundView.title)
    problems.push(`the project opens on tab ${result.projectOpens.selectedTab}, not ${cfg.roundView.title}`);
  if (!page.url().includes(`tab=${cfg.roundView.id}`)) problems.push(`the project opened at ${page.url()}`);

  // 1b. A returning person who last looked at another tab: which tab does the plain URL open on then? Reported,
  // not required (Label Studio's own choice); project_url(project_id, view_id) names the round tab outright.
  await page.getByRole("tab", { name: "Older tab" }).click();
  await page.waitForURL((u) => !u.search.includes(`tab=${cfg.roundView.id}`), { timeout: 15000 }).catch(() => null);
  const clicked = { url: page.url(), selectedTab: await selectedTab(page) };
  await page.goto(`${cfg.labelStudio}${cfg.projectPath}`);
  await page.waitForSelector("span.lsf-th[data-id]", { timeout: 60000 });
  await page.waitForTimeout(1000);
  result.projectReopens = { afterClicking: clicked, url: page.url(), selectedTab: await selectedTab(page) };
  await page.goto(`${cfg.labelStudio}${cfg.projectPath}?tab=${cfg.roundView.id}`);
  await page.waitForSelector("span.lsf-th[data-id]", { timeout: 60000 });
  await page.waitForTimeout(1000);

  // 2. The round tab's table: no internal or review columns.
  const roundHeaders = await headers(page);
  result.roundTabColumns = roundHeaders.map((h) => h.text || h.id);
  for (const field of cfg.hiddenFields) {
    if (roundHeaders.some((h) => h.id === `tasks:data.${field}` || h.text === field))
      problems.push(`the round tab shows column ${field}`);
  }
  await shot(page, "round-tab");

  // 3. A task opened from the round tab (the Data Manager's labeling view, with the task list beside it).
  await page.goto(`${cfg.labelStudio}${cfg.projectPath}?tab=${cfg.roundView.id}&task=${cfg.roundTaskId}`);
  result.taskFromTab = await measureLabeling(page, "task opened from the round tab");
  await shot(page, "round-task");

  // 4. The labeling stream ("Label All Tasks"), as an annotator starts: the instructions come first.
  await page.goto(`${cfg.labelStudio}${cfg.projectPath}?tab=${cfg.roundView.id}`);
  await page.getByRole("button", { name: "Label All Tasks" }).click();
  // Label Studio's own modal: its title, then the project's instructions (build_instructions: a <dl>).
  const modal = page.getByText("Labeling Instructions", { exact: true }).locator("xpath=ancestor::div[.//dl][1]");
  await modal.first().waitFor({ timeout: 30000 }).catch(() => null);
  const modalText = (await modal.count()) ? await modal.first().innerText() : "";
  result.instructions = { shownOnStart: modalText.length > 0, missing: cfg.instructionSnippets.filter((s) => !modalText.includes(s)) };
  if (!modalText) problems.push("no instructions were shown when labeling started");
  else if (result.instructions.missing.length) problems.push(`the instructions lack ${result.instructions.missing}`);
  await shot(page, "instructions");
  if (modalText) {
    await page.keyboard.press("Escape");
    await modal.first().waitFor({ state: "hidden", timeout: 10000 }).catch(() => null);
  }
  result.stream = await measureLabeling(page, "labeling stream");
  await shot(page, "labeling-stream");

  // 5. The review tab: why each task is there, and the aggregated label with its confidence.
  await page.goto(`${cfg.labelStudio}${cfg.projectPath}?tab=${cfg.reviewView.id}`);
  await page.waitForSelector("span.lsf-th[data-id]", { timeout: 60000 });
  await page.waitForTimeout(1000);
  const reviewHeaders = await headers(page);
  result.reviewTab = { selectedTab: await selectedTab(page), columns: reviewHeaders.map((h) => h.text || h.id) };
  result.reviewTab.columnRights = Object.fromEntries(reviewHeaders.map((h) => [h.text || h.id, h.right]));
  for (const field of cfg.reviewFields) {
    const h = reviewHeaders.find((c) => c.id === `tasks:data.${field}`);
    if (!h) problems.push(`the review tab lacks column ${field}`);
    else if (h.right > VIEWPORT.width) problems.push(`the review tab's ${field} column ends at x=${h.right}, past the viewport`);
  }
  for (const field of cfg.hiddenFields.filter((f) => !cfg.reviewFields.includes(f))) {
    if (reviewHeaders.some((h) => h.id === `tasks:data.${field}`)) problems.push(`the review tab shows column ${field}`);
  }
  const rows = await page.$$eval(".lsf-table__row, [class*=table__row]", (rs) => rs.map((r) => r.innerText));
  result.reviewTab.rows = rows.length;
  for (const [taskId, values] of Object.entries(cfg.reviewValues)) {
    const row = rows.find((r) => r.split("\n").map((s) => s.trim()).includes(taskId));
    if (!row) {
      problems.push(`the review tab has no row for task ${taskId}`);
      continue;
    }
    for (const v of Object.values(values)) if (!row.includes(v)) problems.push(`task ${taskId}'s review row lacks ${v}`);
  }
  await shot(page, "review-tab");
} catch (err) {
  problems.push(String(err));
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ...result, problems }, null, 1));
process.exit(problems.length ? 1 : 0);
