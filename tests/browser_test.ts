/**
 * The library runs in a browser: `deno bundle --platform browser` turns mod.ts into one ES module;
 * a page served from 127.0.0.1 imports it in headless Chromium, compiles examples/exact.attn
 * (inlined in the page), runs it on WebGPU (`navigator.gpu`: SwiftShader, Chromium's software
 * adapter) and on the float64 interpreter with the same awkward-sized random inputs, and the two
 * must agree to 1e-5. Chromium is driven over the DevTools protocol (a WebSocket), no npm package.
 *
 * Skipped, saying so once, when Chromium is not installed (`apt-get install -y chromium`). Needs
 * `--allow-run` for `deno` (the bundler) and `chromium` (or `/usr/bin/chromium`),
 * `--allow-net=127.0.0.1` (page server and DevTools), `--allow-write=/tmp` and `--allow-read`.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const PROGRAM = new URL("examples/exact.attn", ROOT);
/**
 * The whole check (bundle, browser start, page run) must finish within this. Alone it takes about
 * 6 s here; with both cores busy (the fuzzer beside a clean-clone CI run) SwiftShader's shader
 * compile took over 58 s, so the deadline only guards against a hang.
 */
const DEADLINE_MS = 240_000;

/**
 * The Chromium to run, or why there is none: /usr/bin/chromium, else `chromium` on PATH (found
 * by running `chromium --version` where that is allowed).
 */
function findChromium(): { command: string } | { skip: string } {
  const missing = "browser check skipped: chromium not installed; apt-get install -y chromium";
  const granted = (command: string) =>
    Deno.permissions.querySync({ name: "run", command }).state === "granted";
  let installed = false;
  try {
    installed = Deno.statSync("/usr/bin/chromium").isFile;
  } catch { /* not there */ }
  if (installed) {
    // The test fails (not skips) without the permission: the `test` task must grant it.
    return { command: granted("/usr/bin/chromium") ? "/usr/bin/chromium" : "chromium" };
  }
  if (!granted("chromium")) return { skip: missing };
  try {
    const out = new Deno.Command("chromium", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .outputSync();
    return out.success ? { command: "chromium" } : { skip: missing };
  } catch {
    return { skip: missing };
  }
}

const chromium = findChromium();
if ("skip" in chromium) console.error(chromium.skip);

/** The deno binary to run: this one where allowed, else `deno` on PATH (as import_test does). */
function denoCommand(): string {
  const exec = Deno.execPath();
  return Deno.permissions.querySync({ name: "run", command: exec }).state === "granted"
    ? exec
    : "deno";
}

/** What the page reports. */
interface PageResult {
  ok: boolean;
  error?: string;
  adapter?: string;
  architecture?: string;
  isFallback?: boolean;
  gpuError?: number;
  profileError?: number;
  shape?: number[];
  dispatches?: number;
  finite?: boolean;
  ms?: number;
}

/** The page's module: compile the inlined program, run on the GPU and the interpreter, compare. */
function pageModule(source: string): string {
  return `import { compile, randomTensor, relativeError } from "./attune.js";
const SOURCE = ${JSON.stringify(source)};
window.__attune = (async () => {
  const t0 = performance.now();
  try {
    if (!navigator.gpu) return { ok: false, error: "navigator.gpu is undefined" };
    const adapterInfo = (await navigator.gpu.requestAdapter())?.info;
    const program = await compile(SOURCE, { file: "exact.attn" });
    // Awkward sizes: batch 2, n = 37 queries, m = 53 keys, d = 16, e = 24; key-padding masks
    // (row 0: the first 41 keys; row 1: all but every 7th key).
    const [b, n, m, d, e] = [2, 37, 53, 16, 24];
    const mask = new Float64Array(b * m);
    for (let j = 0; j < m; j++) {
      mask[j] = j < 41 ? 1 : 0;
      mask[m + j] = j % 7 === 3 ? 0 : 1;
    }
    const inputs = {
      q: randomTensor([b, n, d], { seed: 11 }),
      k: randomTensor([b, m, d], { seed: 12 }),
      v: randomTensor([b, m, e], { seed: 13 }),
      mask: { shape: [b, m], data: mask },
    };
    const want = await program.run(inputs, { backend: "interp" });
    const got = await program.run(inputs, { backend: "gpu" });
    const { output, stats } = await program.profile(inputs);
    return {
      ok: true,
      adapter: stats.adapter,
      architecture: adapterInfo?.architecture,
      isFallback: adapterInfo?.isFallbackAdapter,
      gpuError: relativeError(got, want),
      profileError: relativeError(output, want),
      shape: got.shape,
      dispatches: stats.dispatches,
      finite: Array.from(got.data).every(Number.isFinite),
      ms: performance.now() - t0,
    };
  } catch (err) {
    return { ok: false, error: String(err?.stack ?? err) };
  }
})();
`;
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>attune browser check</title>
<script type="module" src="./run.js"></script></head><body></body></html>
`;

/** A DevTools-protocol message or result (untyped JSON). */
// deno-lint-ignore no-explicit-any
type Json = any;

/** A minimal DevTools-protocol client: commands (with an optional session) and events. */
class Cdp {
  #ws: WebSocket;
  #next = 1;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #waiters: { method: string; sessionId?: string; resolve: (p: unknown) => void }[] = [];
  /** Console messages and uncaught exceptions of the page, for the failure message. */
  readonly log: string[] = [];
  readonly closed: Promise<void>;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    this.closed = new Promise((resolve) => ws.addEventListener("close", () => resolve()));
    ws.addEventListener("message", (ev) => this.#onMessage(JSON.parse(String(ev.data))));
    ws.addEventListener("close", () => {
      for (const p of this.#pending.values()) p.reject(new Error("DevTools connection closed"));
      this.#pending.clear();
    });
  }

  static connect(url: string): Promise<Cdp> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.addEventListener("open", () => resolve(new Cdp(ws)), { once: true });
      ws.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), {
        once: true,
      });
    });
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Json> {
    const id = this.#next++;
    this.#ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
  }

  /** The next event `method` (of `sessionId`). */
  once(method: string, sessionId?: string): Promise<Json> {
    return new Promise((resolve) => this.#waiters.push({ method, sessionId, resolve }));
  }

  #onMessage(msg: Json): void {
    if (msg.id !== undefined) {
      const p = this.#pending.get(msg.id);
      this.#pending.delete(msg.id);
      if (!p) return;
      if (msg.error) p.reject(new Error(`${msg.error.message} (${msg.error.code})`));
      else p.resolve(msg.result);
      return;
    }
    if (msg.method === "Runtime.consoleAPICalled") {
      const args = msg.params.args.map((a: { value?: unknown; description?: string }) =>
        a.value ?? a.description
      );
      this.log.push(`console.${msg.params.type}: ${args.join(" ")}`);
    } else if (msg.method === "Runtime.exceptionThrown") {
      const d = msg.params.exceptionDetails;
      this.log.push(`exception: ${d.exception?.description ?? d.text}`);
    }
    const i = this.#waiters.findIndex((w) =>
      w.method === msg.method && (w.sessionId === undefined || w.sessionId === msg.sessionId)
    );
    if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(msg.params);
  }

  close(): Promise<void> {
    if (this.#ws.readyState !== WebSocket.CLOSED) this.#ws.close();
    return this.closed;
  }
}

/** `promise`, or an error naming `what` after `ms` (the timer is always cleared). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Bundle mod.ts for the browser into `dir/attune.js` with this Deno. */
async function bundle(dir: string): Promise<void> {
  const out = await new Deno.Command(denoCommand(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--format",
      "esm",
      new URL("mod.ts", ROOT).pathname,
      "-o",
      `${dir}/attune.js`,
    ],
    cwd: ROOT.pathname,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `deno bundle failed:\n${text}`);
}

/** Start headless Chromium with DevTools on a free port; its browser WebSocket URL. */
function launch(command: string, profileDir: string) {
  const child = new Deno.Command(command, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu-sandbox",
      "--enable-unsafe-webgpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-quic",
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      `--user-data-dir=${profileDir}`,
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Read stderr until the DevTools line; keep draining it (and keep it for errors) afterwards.
  let stderr = "";
  const { promise: url, resolve: found } = Promise.withResolvers<string>();
  const drained = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      if (stderr.length < 20_000) stderr += chunk;
      const m = stderr.match(/DevTools listening on (ws:\/\/\S+)/);
      if (m) found(m[1]);
    }
  })();
  const exited = child.status.then((s) => {
    throw new Error(`chromium exited (code ${s.code}) before DevTools was up:\n${stderr}`);
  });
  exited.catch(() => {});
  return {
    child,
    drained,
    stderr: () => stderr,
    url: Promise.race([url, exited]),
  };
}

/** Stop Chromium: Browser.close, then SIGTERM, then SIGKILL; wait for it and its stderr. */
async function stop(
  child: Deno.ChildProcess,
  drained: Promise<void>,
  cdp: Cdp | undefined,
): Promise<void> {
  const gone = child.status.then(() => true);
  if (cdp) {
    await within(cdp.send("Browser.close"), 3_000, "Browser.close").catch(() => {});
    await within(cdp.close(), 3_000, "closing the DevTools socket").catch(() => {});
  }
  const wait = (ms: number) => within(gone, ms, "chromium to exit").catch(() => false);
  if (!(await wait(3_000))) {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    if (!(await wait(3_000))) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
    }
  }
  await drained.catch(() => {});
}

/** Load `pageUrl` in a new tab and return what `window.__attune` resolves to. */
async function runPage(cdp: Cdp, pageUrl: string, ms: number): Promise<PageResult> {
  const { targetId } = await cdp.send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await cdp.send("Target.attachToTarget", { targetId, flatten: true });
  await cdp.send("Runtime.enable", {}, sessionId);
  await cdp.send("Page.enable", {}, sessionId);
  const loaded = cdp.once("Page.loadEventFired", sessionId);
  const nav = await cdp.send("Page.navigate", { url: pageUrl }, sessionId);
  if (nav.errorText) throw new Error(`navigating to ${pageUrl}: ${nav.errorText}`);
  await within(loaded, ms, "the page's load event");
  // Module scripts run before the load event, so window.__attune is set unless the module failed.
  const r = await within(
    cdp.send("Runtime.evaluate", {
      expression: "window.__attune ?? { ok: false, error: 'the page module did not run' }",
      awaitPromise: true,
      returnByValue: true,
    }, sessionId),
    ms,
    "the page's compile and runs",
  );
  if (r.exceptionDetails) {
    throw new Error(`evaluating in the page: ${JSON.stringify(r.exceptionDetails)}`);
  }
  return r.result.value as PageResult;
}

Deno.test({
  name: "browser: the bundle compiles exact.attn in headless Chromium, runs it on WebGPU, and " +
    "matches the interpreter (n = 37, m = 53, d = 16, masks)",
  ignore: "skip" in chromium,
  fn: async () => {
    const command = (chromium as { command: string }).command;
    assert.equal(
      Deno.permissions.querySync({ name: "run", command }).state,
      "granted",
      "chromium is installed but not allowed to run: grant --allow-run=deno,chromium " +
        "(deno.json's test task does)",
    );
    const start = performance.now();
    const left = () => Math.max(1_000, DEADLINE_MS - (performance.now() - start));
    const dir = await Deno.makeTempDir({ prefix: "attune_browser_" });
    const files = new Map<string, string>([
      ["/", "index.html"],
      ["/index.html", "index.html"],
      ["/run.js", "run.js"],
      ["/attune.js", "attune.js"],
    ]);
    const served: string[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const path = new URL(req.url).pathname;
      served.push(path);
      const file = files.get(path);
      if (!file) return new Response("not found", { status: 404 });
      const type = file.endsWith(".html") ? "text/html" : "text/javascript";
      return new Response(await Deno.readFile(`${dir}/${file}`), {
        headers: { "content-type": `${type}; charset=utf-8`, "cache-control": "no-store" },
      });
    });
    let browser: ReturnType<typeof launch> | undefined;
    let cdp: Cdp | undefined;
    try {
      await Deno.writeTextFile(`${dir}/index.html`, PAGE);
      await Deno.writeTextFile(`${dir}/run.js`, pageModule(await Deno.readTextFile(PROGRAM)));
      await within(bundle(dir), left(), "deno bundle");
      browser = launch(command, `${dir}/profile`);
      const wsUrl = await within(browser.url, Math.min(left(), 30_000), "chromium's DevTools");
      cdp = await Cdp.connect(wsUrl);
      const pageUrl = `http://127.0.0.1:${server.addr.port}/`;
      const r = await runPage(cdp, pageUrl, left());
      const context = `page: ${JSON.stringify(r)}\npage log:\n${cdp.log.join("\n")}\nserved: ${
        served.join(" ")
      }`;
      assert.ok(r.ok, `the page failed: ${r.error}\n${context}`);
      assert.ok(r.adapter, `no adapter description: the GPU path did not run\n${context}`);
      assert.deepEqual(r.shape, [2, 37, 24], context);
      assert.ok(r.finite, `non-finite output\n${context}`);
      assert.ok(r.dispatches! >= 1, context);
      assert.ok(r.gpuError! <= 1e-5, `GPU vs interpreter relative error ${r.gpuError}\n${context}`);
      assert.ok(r.profileError! <= 1e-5, `profile vs interpreter ${r.profileError}\n${context}`);
      console.log(
        `browser (${command}): adapter "${r.adapter}" (${r.architecture}, fallback ${r.isFallback}), ` +
          `${r.dispatches} dispatches, relative error ${r.gpuError!.toExponential(2)}; page ${
            Math.round(r.ms!)
          } ms, whole check ${Math.round(performance.now() - start)} ms`,
      );
    } catch (e) {
      if (browser && !(e instanceof assert.AssertionError)) {
        (e as Error).message += `\nchromium stderr:\n${browser.stderr().slice(-4_000)}`;
      }
      throw e;
    } finally {
      if (browser) await stop(browser.child, browser.drained, cdp);
      await server.shutdown();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
