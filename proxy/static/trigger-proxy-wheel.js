// <trigger-proxy-wheel>: a spin-the-wheel for one trigger, as a custom element (an ES module, no
// framework, no build step), built on the trigger-proxy client.
//
//   <script type="module" src="https://rewards.example.com/client/trigger-proxy-wheel.js"></script>
//   <trigger-proxy-wheel trigger="spin-wheel" base-url="https://rewards.example.com">
//   </trigger-proxy-wheel>
//
// Attributes: trigger (an allow-listed id or name), base-url (the proxy; default: this page's
// origin), source (x-source: web, mobile or unix), customer (optional: names the customer for
// the countdown kept across reloads when the proxy serves no reads), and on a Shopify theme
// either base-url="/apps/<subpath>" (the shop's App Proxy) or data-shop, data-customer, data-ts
// and data-digest (a theme digest, docs/shopify.md). Property: token (a session
// token, sent as a bearer token; without one the session cookie is used). Method: refresh()
// (call it after the customer signs in, out or changes: everything of the previous one goes).
// Events (bubbling, composed): trigger-proxy-reward {detail: the client's result} after a win;
// trigger-proxy-signin when the customer must sign in (again).
//
// Honest by construction: the segments are the trigger's configured coin range, read from the
// proxy; the wheel turns only once Nector has answered, and stops on the segment holding the
// reward it returned. A refusal never turns it. Theming: the --tp-* custom properties below.

import { createClient, newKey } from "./trigger-proxy.js";

const STYLE = `
:host {
  --tp-accent: #3f4fcf; --tp-accent-text: #fff; --tp-text: #1d2330; --tp-muted: #4a5163;
  --tp-surface: #fff; --tp-danger: #a1261b; --tp-radius: 12px; --tp-wheel-size: 220px;
  --tp-segment-1: #ffd6d6; --tp-segment-2: #fff1b8; --tp-segment-3: #d4f5d9; --tp-segment-4: #d6e6ff;
  display: block; container-type: inline-size; color: var(--tp-text); font: inherit;
}
.widget { display: grid; gap: 1rem; align-items: center; justify-items: center;
  background: var(--tp-surface); border-radius: var(--tp-radius); padding: 1rem; }
@container (min-width: 480px) {
  .widget { grid-template-columns: auto 1fr; justify-items: start; }
}
.wheel-area { position: relative; width: min(var(--tp-wheel-size), 80cqi); aspect-ratio: 1; }
.wheel { width: 100%; height: 100%; display: block;
  transition: transform 3s cubic-bezier(.15, .85, .25, 1); }
.pointer { position: absolute; top: -6px; left: 50%; transform: translateX(-50%); width: 0; height: 0;
  border-left: 12px solid transparent; border-right: 12px solid transparent;
  border-top: 24px solid var(--tp-text); z-index: 1; }
.panel { display: grid; gap: .5rem; width: 100%; max-width: 22rem; }
.balance { font-size: 1.1rem; font-weight: 600; min-height: 1.5em; margin: 0; }
.status { font-size: 1.15rem; min-height: 3em; margin: 0; line-height: 1.5; }
.hint { color: var(--tp-muted); min-height: 1.5em; margin: 0; line-height: 1.5; }
:host([state="out-of-spins"]) .hint, :host([state="busy"]) .hint,
:host([state="offline"]) .status, :host([state="expired"]) .status,
:host([state="error"]) .status { color: var(--tp-danger); }
button { font: inherit; font-size: 1.05rem; padding: .65rem 1.2rem; min-height: 2.75rem;
  min-width: 10rem; border: 0; border-radius: 8px; background: var(--tp-accent);
  color: var(--tp-accent-text); cursor: pointer; justify-self: start; }
/* Narrow: three lines kept for the longest message, so nothing below moves when it comes. */
@container (max-width: 479px) {
  button { width: 100%; } .panel { justify-items: stretch; }
  .status { font-size: 1rem; min-height: 4.5em; }
}
button:disabled { opacity: .55; cursor: not-allowed; }
button:focus-visible { outline: 3px solid var(--tp-text); outline-offset: 2px; }
text { font: 600 9px system-ui, sans-serif; fill: #1d2330; }
@media (prefers-reduced-motion: reduce) { .wheel { transition: none; } }
`;

const COLORS = 4;
const MAX_SEGMENTS = 8;
const TURNS = 5; // full turns before the wheel settles

// Each refusal, in the customer's words.
const WORDS = {
  "signed-out": "Sign in to spin the wheel.",
  expired: "Your session has ended. Please sign in again.",
  "out-of-spins": "You have used your spins for now.",
  busy: "Lots of players right now.",
  offline: "You are offline. Your spin will go through when you are back online.",
  error: "We could not finish your spin. Please try again in a moment.",
};

function segmentsOf(reward) {
  const range = reward?.wallet?.coin_range;
  if (!range) return [{ min: null, max: null, label: "Coupon" }];
  const { min, max } = range;
  const count = Math.max(1, Math.min(MAX_SEGMENTS, max - min + 1));
  const size = (max - min + 1) / count;
  return Array.from({ length: count }, (_, i) => {
    const lo = min + Math.floor(i * size);
    const hi = min + Math.floor((i + 1) * size) - 1;
    return { min: lo, max: hi, label: lo === hi ? `${lo}` : `${lo}–${hi}` };
  });
}

/**
 * A name for the session a token carries, for the countdown's storage key: a digest, never the
 * token's own characters (its signature is what makes it a session, and localStorage outlives
 * the page). Without Web Crypto (a page served over plain http) there is none: the countdown
 * then does not survive a reload.
 */
async function digest(token) {
  try {
    const bytes = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
    const hex = Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0"));
    return `t:${hex.join("").slice(0, 32)}`;
  } catch {
    return null;
  }
}

function waitText(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60}s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** The SVG path of segment i of n, clockwise from the top (a whole disc when n is 1). */
function sector(i, n) {
  if (n === 1) return "M 0 -96 A 96 96 0 1 1 -0.01 -96 Z";
  const a0 = ((i / n) * 2 - 0.5) * Math.PI;
  const a1 = (((i + 1) / n) * 2 - 0.5) * Math.PI;
  const p = (a) => `${(96 * Math.cos(a)).toFixed(2)} ${(96 * Math.sin(a)).toFixed(2)}`;
  return `M 0 0 L ${p(a0)} A 96 96 0 0 1 ${p(a1)} Z`; // at most 8 segments: never over half
}

export class TriggerProxyWheel extends HTMLElement {
  static observedAttributes = ["trigger", "base-url", "source"];

  #token = null;
  #client = null;
  #segments = [];
  #rotation = 0;
  #timer = null;
  #pendingKey = null;
  #who = "cookie";
  #generation = 0; // bumped on refresh(): answers for an earlier customer are dropped
  #onOnline = () => this.#state === "offline" && this.spin();

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>${STYLE}</style>
      <div class="widget" part="widget">
        <div class="wheel-area"><div class="pointer" aria-hidden="true"></div>
          <svg class="wheel" viewBox="-100 -100 200 200" role="img" aria-label="Prize wheel"></svg>
        </div>
        <div class="panel">
          <p class="balance" part="balance"></p>
          <button type="button" class="spin" part="button" disabled>Spin the wheel</button>
          <p class="status" part="status" role="status" aria-live="polite"></p>
          <p class="hint" part="hint"></p>
        </div>
      </div>`;
    this.$ = (selector) => root.querySelector(selector);
    this.$(".spin").addEventListener("click", () => this.spin());
    // A page may set the token before this module has run: take it over from the plain element.
    if (Object.hasOwn(this, "token")) {
      const token = this.token;
      delete this.token;
      this.#token = token || null;
    }
  }

  get token() {
    return this.#token;
  }

  set token(value) {
    this.#token = value || null;
    if (this.isConnected) this.refresh();
  }

  /** The wheel's segments ({min, max, label}), as drawn, clockwise from the pointer. */
  get segments() {
    return this.#segments.map((s) => ({ ...s }));
  }

  get #state() {
    return this.getAttribute("state");
  }

  connectedCallback() {
    window.addEventListener("online", this.#onOnline);
    this.refresh();
  }

  disconnectedCallback() {
    window.removeEventListener("online", this.#onOnline);
    clearInterval(this.#timer);
  }

  attributeChangedCallback(name, before, after) {
    if (before !== null && before !== after && this.isConnected) this.refresh();
  }

  /** Forget everything shown for the previous customer and look again. */
  async refresh() {
    const generation = ++this.#generation;
    clearInterval(this.#timer);
    this.#pendingKey = null;
    this.#show("loading", "", "");
    this.$(".balance").textContent = "";
    this.#client = createClient({
      baseUrl: (this.getAttribute("base-url") || "").replace(/\/$/, ""),
      token: this.#token,
      shopifyDigest: this.#token ? null : this.#shopifyDigest(),
      source: this.getAttribute("source") || "web",
    });
    try {
      const info = await this.#client.triggerInfo(this.getAttribute("trigger") || "");
      if (generation !== this.#generation) return;
      this.#draw(segmentsOf(info.reward));
    } catch (err) {
      if (generation === this.#generation) this.#show("error", WORDS.error, "");
      return;
    }
    await this.#lookUpCustomer(generation);
  }

  /** The theme's digest in the data- attributes, if it rendered one (a customer signed in). */
  #shopifyDigest() {
    const { shop, customer, ts, digest: mac } = this.dataset;
    if (!mac || !customer || !ts) return null;
    return { shop: shop || globalThis.Shopify?.shop, customerId: customer, ts, digest: mac };
  }

  async #lookUpCustomer(generation) {
    let lead = null;
    try {
      lead = await this.#client.lead();
    } catch (err) {
      if (generation !== this.#generation) return;
      if (err.code === "missing_session") return this.#signIn("signed-out");
      if (err.code === "invalid_session" || err.code === "expired_session") {
        return this.#signIn("expired");
      }
      // No reads on this proxy (read_not_allowed), or no lead yet (a new customer): go on.
      if (err.status === 404) this.#balance(0);
    }
    if (generation !== this.#generation) return;
    if (lead) this.#balance(lead.available);
    const token = this.#token;
    const shopper = this.#shopifyDigest()?.customerId;
    const named =
      lead?._id || this.getAttribute("customer") || (shopper ? `shopify:${shopper}` : null);
    const who = named || (token ? await digest(token) : "cookie");
    if (generation !== this.#generation) return;
    this.#who = who;
    const saved = this.#saved();
    if (saved) return this.#countdown(saved.kind, (saved.until - Date.now()) / 1000, false);
    this.#show("ready", "", "");
  }

  /** Spin: one logical attempt, with one Idempotency-Key across its retries. */
  async spin() {
    const state = this.#state;
    if (state !== "ready" && state !== "won" && state !== "offline" && state !== "error") return;
    if (this.#segments.length === 0) return this.refresh(); // the trigger could not be read
    const generation = this.#generation;
    const key = this.#pendingKey || newKey();
    this.#pendingKey = key;
    this.#show("waiting", "Checking your spin…", "");
    this.$(".spin").setAttribute("aria-busy", "true");
    let result;
    try {
      result = await this.#client.trigger(this.getAttribute("trigger"), { idempotencyKey: key });
    } catch (err) {
      if (generation === this.#generation) this.#refused(err);
      return;
    } finally {
      this.$(".spin").removeAttribute("aria-busy");
    }
    if (generation !== this.#generation) return;
    this.#pendingKey = null;
    const data = result.data?.data || {};
    const coins = data.wallet_reward?.coins;
    this.#show("spinning", "", "");
    const lead = this.#client.lead().catch(() => null); // as Nector's widget does after a reward
    await this.#turnTo(coins);
    const fresh = await lead;
    if (generation !== this.#generation) return;
    if (fresh) {
      this.#who = fresh._id;
      this.#balance(fresh.available);
    } else if (typeof data.wallet_reward?.balance === "number") {
      this.#balance(data.wallet_reward.balance);
    }
    const coupon = data.offer_reward ? " and a coupon" : "";
    const won =
      typeof coins === "number" ? `You won ${coins} coins${coupon}!` : "You won a coupon!";
    const limit = result.rateLimit;
    if (limit && limit.remaining <= 0) this.#countdown("out-of-spins", limit.reset, true, won);
    else this.#show("won", won, limit ? `Spins left: ${limit.remaining}` : "");
    this.dispatchEvent(
      new CustomEvent("trigger-proxy-reward", { detail: result, bubbles: true, composed: true }),
    );
  }

  #refused(err) {
    const code = err.code;
    if (code === "network_error") return this.#show("offline", WORDS.offline, "", "Try again");
    this.#pendingKey = null;
    if (code === "missing_session") return this.#signIn("signed-out");
    if (code === "invalid_session" || code === "expired_session") return this.#signIn("expired");
    if (code === "rate_limited") return this.#countdown("out-of-spins", err.retryAfter ?? 60, true);
    if (code === "upstream_busy" || code === "idempotency_in_flight") {
      return this.#countdown("busy", err.retryAfter ?? 10, true);
    }
    this.#show("error", WORDS.error, "");
  }

  #signIn(state) {
    this.#show(state, WORDS[state], "");
    this.dispatchEvent(new CustomEvent("trigger-proxy-signin", { bubbles: true, composed: true }));
  }

  /** A live countdown (429 and 503 alike), kept in localStorage so a reload shows it too. */
  #countdown(kind, seconds, save, status = WORDS[kind]) {
    clearInterval(this.#timer);
    const until = Date.now() + Math.max(0, seconds) * 1000;
    if (save) this.#save({ kind, until });
    const prefix = kind === "busy" ? "Try again in" : "Next spin in";
    const tick = () => {
      const left = (until - Date.now()) / 1000;
      if (left <= 0) {
        clearInterval(this.#timer);
        this.#save(null);
        return this.#show("ready", "", "");
      }
      this.$(".hint").textContent = `${prefix} ${waitText(left)}`;
    };
    this.#show(kind, status, "");
    tick();
    this.#timer = setInterval(tick, 1000);
  }

  #show(state, status, hint, label = "Spin the wheel") {
    this.setAttribute("state", state);
    this.$(".status").textContent = status;
    this.$(".hint").textContent = hint;
    const button = this.$(".spin");
    button.textContent = label;
    button.disabled = !["ready", "won", "offline", "error"].includes(state);
  }

  #balance(coins) {
    this.$(".balance").textContent = typeof coins === "number" ? `Balance: ${coins} coins` : "";
  }

  #draw(segments) {
    this.#segments = segments;
    const n = segments.length;
    const svg = this.$(".wheel");
    const parts = segments.map((s, i) => {
      const mid = ((i + 0.5) / n) * 360;
      return `<path d="${sector(i, n)}" fill="var(--tp-segment-${(i % COLORS) + 1})"
          stroke="#1d2330" stroke-width="1"></path>
        <text transform="rotate(${mid}) translate(0 -62) rotate(90)" text-anchor="middle"
          dominant-baseline="middle">${s.label}</text>`;
    });
    svg.innerHTML = `${parts.join("")}<circle r="96" fill="none" stroke="#1d2330" stroke-width="4"></circle>`;
    const coins = segments[0].min === null ? "" : " coins";
    svg.setAttribute(
      "aria-label",
      `Prize wheel: ${segments.map((s) => s.label).join(", ")}${coins}`,
    );
  }

  /** Turn to the segment holding ``coins`` (the nearest, if Nector paid outside the range). */
  async #turnTo(coins) {
    const segments = this.#segments;
    const n = segments.length;
    let index = 0;
    if (typeof coins === "number" && segments[0].min !== null) {
      const distance = (s) => (coins < s.min ? s.min - coins : coins > s.max ? coins - s.max : 0);
      index = segments.reduce(
        (best, s, i) => (distance(s) < distance(segments[best]) ? i : best),
        0,
      );
    }
    this.setAttribute("landed", String(index));
    const width = 360 / n;
    const jitter = (Math.random() - 0.5) * width * 0.6;
    const target = 360 - ((index + 0.5) * width + jitter); // that segment under the pointer
    const current = ((this.#rotation % 360) + 360) % 360;
    this.#rotation += TURNS * 360 + ((target - current + 360) % 360);
    const wheel = this.$(".wheel");
    const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
    wheel.style.transform = `rotate(${this.#rotation}deg)`;
    if (still) return;
    await new Promise((resolve) => {
      const done = () => resolve();
      wheel.addEventListener("transitionend", done, { once: true });
      setTimeout(done, 3300);
    });
  }

  #storageKey() {
    return `trigger-proxy-wheel:${this.getAttribute("trigger")}:${this.#who}`;
  }

  #saved() {
    if (this.#who === null) return null;
    try {
      const saved = JSON.parse(localStorage.getItem(this.#storageKey()) || "null");
      return saved && saved.until > Date.now() ? saved : null;
    } catch {
      return null;
    }
  }

  #save(value) {
    if (this.#who === null) return;
    try {
      if (value) localStorage.setItem(this.#storageKey(), JSON.stringify(value));
      else localStorage.removeItem(this.#storageKey());
    } catch {
      // Storage refused (private mode): the countdown just does not survive a reload.
    }
  }
}

if (!customElements.get("trigger-proxy-wheel")) {
  customElements.define("trigger-proxy-wheel", TriggerProxyWheel);
}
