// Opens, in headless Chromium, a Label Studio labeling page as an annotator would and a release card
// as an engineer would; exits non-zero unless the task's image and the card's pictures really render.
// Usage: node check.mjs '<json: {labelStudio, user, password, taskPath, cardPath, screenshots}>'
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: cfg.chromium || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const problems = [];
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("console", (m) => {
    if (m.type() === "error" && /cors|image|local-files|401|403/i.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.url().includes("/data/local-files/") && r.status() !== 200) problems.push(`image ${r.status()}: ${r.url()}`);
  });

  // Log in through the form, as a person does.
  await page.goto(`${cfg.labelStudio}/user/login/`);
  await page.fill("input[name=email]", cfg.user);
  await page.fill("input[name=password]", cfg.password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith("/user/login"), { timeout: 60000 }), page.press("input[name=password]", "Enter")]);

  await page.goto(`${cfg.labelStudio}${cfg.taskPath}`);
  const image = await page.waitForFunction(
    () =>
      [...document.querySelectorAll("img")].find(
        (i) => i.src.includes("/data/local-files/") && i.complete && i.naturalWidth > 0,
      )?.naturalWidth ?? false,
    null,
    { timeout: 90000 },
  );
  result.taskImageWidth = await image.jsonValue();
  const redBox = await page.locator("text=There was an issue loading URL").count();
  if (redBox) problems.push("Label Studio shows 'There was an issue loading URL'");
  if (cfg.screenshots) await page.screenshot({ path: `${cfg.screenshots}/label-studio-task.png` });

  // The release card is a self-contained file: every picture must decode.
  const card = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await card.goto(`file://${cfg.cardPath}`);
  const pictures = await card.evaluate(async () => {
    const imgs = [...document.querySelectorAll("img")];
    await Promise.all(imgs.map((i) => (i.complete ? null : new Promise((r) => (i.onload = i.onerror = r)))));
    const svgs = [...document.querySelectorAll("svg")].filter((s) => s.getBoundingClientRect().width > 0);
    return { images: imgs.length, broken: imgs.filter((i) => i.naturalWidth === 0).length, plots: svgs.length };
  });
  result.card = pictures;
  if (pictures.images === 0) problems.push("the release card has no pictures");
  if (pictures.broken) problems.push(`${pictures.broken} broken pictures on the release card`);
  if (cfg.screenshots) await card.screenshot({ path: `${cfg.screenshots}/release-card.png`, fullPage: true });
} catch (err) {
  problems.push(String(err));
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ...result, problems }));
process.exit(problems.length ? 1 : 0);
